"""POST /v1/embeddings: the OpenAI embeddings API over models of kind "embedding".

Routed like chat (``Engine.embed``): slots, queue, failover, health, recording with
tokens and cost (endpoint ``embeddings``). No conversation is recorded: an embedding
input is not a message. The answer is the upstream's, with ``model`` the id the client
asked for and ``provider`` added.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from quart import Blueprint, Response, request

from lai.errors import InvalidRequest
from lai.proxy.context import build_context
from lai.proxy.deps import runtime

bp = Blueprint("embeddings", __name__)


@bp.post("/v1/embeddings")
async def create_embeddings() -> Response:
    raw = await request.get_data()
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", param="body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", param="body") from None
    ctx = replace(build_context(), endpoint="embeddings", conversation_id=None)
    done = await runtime().engine.embed(body, ctx)
    return Response(done.body, content_type="application/json", headers={
        "X-Provider": done.provider_id, "X-Model": done.model_id})
