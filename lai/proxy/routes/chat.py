"""POST /v1/chat/completions, streamed and not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from quart import Blueprint, Response, request

from lai.engine.engine import EngineStream
from lai.errors import InvalidRequest
from lai.proxy.context import build_context
from lai.proxy.deps import runtime

bp = Blueprint("chat", __name__)


async def read_json_body() -> object:
    """The request's JSON body. Raises InvalidRequest (400); an oversized body is a 413."""
    raw = await request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", param="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", param="body") from None


async def _relay(stream: EngineStream) -> AsyncIterator[bytes]:
    # Quart cancels this generator when the client goes away; aclose then frees the
    # slot and closes the upstream response, which cancels the upstream request.
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


@bp.post("/v1/chat/completions")
async def chat_completions() -> Response:
    rt = runtime()
    body = await read_json_body()
    ctx = build_context()
    headers = {"X-Conversation-ID": ctx.conversation_id or ""}
    if isinstance(body, dict) and body.get("stream") is True:
        stream = await rt.engine.stream(body, ctx)
        headers.update({
            "X-Provider": stream.provider_id,
            "X-Model": stream.model_id,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        response = Response(_relay(stream), content_type="text/event-stream", headers=headers)
        response.timeout = None
        return response
    done = await rt.engine.complete(body, ctx)
    headers.update({"X-Provider": done.provider_id, "X-Model": done.model_id})
    return Response(done.body, content_type="application/json", headers=headers)
