"""The OpenAI Responses API: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``.

A second face on the one engine: the Responses request becomes a chat body
(``lai.proxy.responses_request``), the engine serves it like any chat completion
(routing, queue, priority, failover, context-window check, recording, metrics, health),
and the chat answer or stream becomes a ``response`` object
(``lai.proxy.responses_output``) or the Responses events
(``lai.proxy.responses_stream``). The request is recorded with endpoint ``responses``.

With ``store`` true (the API's default) the answer is kept (``lai.store.responses``)
before the client sees its end, so ``previous_response_id`` can continue it at once and
``GET /v1/responses/{id}`` returns it; ``store: false`` keeps only the usual request row.

POST is served in front of Quart, as ``POST /v1/chat/completions`` is
(``lai.proxy.routes.chat``): a client that leaves, while queued or streaming, cancels
its request and frees its queue place, slot and upstream request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from quart import Blueprint, Response, g

from lai.errors import InvalidRequest, NotFound
from lai.proxy.access import request_info
from lai.proxy.auth import ADMIN_SCOPE, check_key
from lai.proxy.context import CONVERSATION_ID, context_for
from lai.proxy.deps import json_response, runtime
from lai.proxy.jsonbody import parse_body as _parse
from lai.proxy.responses_output import assistant_message, new_id, response_from_completion
from lai.proxy.responses_request import ResponsesRequest, to_chat
from lai.proxy.responses_stream import ResponseStream
from lai.proxy.routes.chat import (
    ChatEndpoint,
    Receive,
    Scope,
    Send,
    _Disconnect,
    _Headers,
    _send_json,
    answer_errors,
    queue_wait_header,
)
from lai.store import responses as repo

if TYPE_CHECKING:
    from lai.engine.streaming import EngineStream
    from lai.engine.types import RequestContext
    from lai.store.db import Store
    from lai.store.keyvalues import KeyInfo

log = logging.getLogger("lai.proxy.responses")

PATH = "/v1/responses"

bp = Blueprint("responses", __name__)


@bp.route(PATH, methods=["POST"])
async def _rule() -> Any:
    # Only the URL rule is used (OPTIONS and 405 as for any path); ResponsesEndpoint
    # serves POST. Should a request still get here, it gets an error, never a 500.
    log.error("POST %s reached Quart instead of ResponsesEndpoint", PATH)
    raise InvalidRequest(f"Send POST {PATH} to the path exactly as written.", param="path")


def _is_post(scope: Scope) -> bool:
    """Whether ``scope`` is POST /v1/responses, the target read as Quart reads it (an
    absolute-form target ``http://host/v1/responses`` is that path too)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    if not path.startswith("/"):
        path = urlsplit(path).path
    return path == PATH


def _reader(key: KeyInfo | None) -> tuple[str | None, bool]:
    """(key name, may read every stored response) for the caller's key."""
    if key is None:  # auth off, or keyless over the admin socket
        return None, True
    return key.name, key.has_scope(ADMIN_SCOPE)


def _store_or_404(response_id: str) -> Store:
    store: Store | None = runtime().store
    if store is None:
        raise NotFound(f"No response with id {response_id!r} (this server keeps none).",
                       param="response_id")
    return store


@bp.get(f"{PATH}/<response_id>")
async def get_response(response_id: str) -> Response:
    name, admin = _reader(getattr(g, "lai_key", None))
    row = await asyncio.to_thread(repo.get_response, _store_or_404(response_id), response_id,
                                  key_name=name, admin=admin)
    if row is None:
        raise NotFound(f"No response with id {response_id!r}.", param="response_id")
    return json_response(row.body)


@bp.delete(f"{PATH}/<response_id>")
async def delete_response(response_id: str) -> Response:
    name, admin = _reader(getattr(g, "lai_key", None))
    deleted = await asyncio.to_thread(repo.delete_response, _store_or_404(response_id),
                                      response_id, key_name=name, admin=admin)
    if not deleted:
        raise NotFound(f"No response with id {response_id!r}.", param="response_id")
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


def _conversation(body: Any, previous: repo.ResponseRow | None, made: str | None) -> str | None:
    """The conversation a request without X-Conversation-ID is recorded in: the one it
    continues, else its ``prompt_cache_key`` (Codex sends one per session, so a session
    is one conversation) when that is a valid conversation id, else the new one."""
    if previous is not None and previous.conversation_id:
        return previous.conversation_id
    cache_key = body.get("prompt_cache_key") if isinstance(body, dict) else None
    if isinstance(cache_key, str) and CONVERSATION_ID.fullmatch(cache_key) and cache_key.strip("."):
        return cache_key
    return made


def _shown_model(req: ResponsesRequest, served: str) -> ResponsesRequest:
    """Answers name the model the client asked for; for ``auto``, lai's id of the model
    that served it (never the upstream's own name)."""
    return replace(req, model=served) if req.model == "auto" else req


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ResponsesEndpoint(ChatEndpoint):
    """The ASGI app: POST /v1/responses here, everything else to ``app``. It shares
    the chat endpoint's body reading (``server.max_body_size``, 413, 408)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_post(scope):
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``scope``, a POST /v1/responses."""
        info = request_info(scope)  # the id x-request-id and the access log carry
        info.route = PATH
        async with answer_errors(send) as ex:
            headers = _Headers(scope["headers"])
            key = await check_key(self.runtime, "POST", PATH, headers, scope)
            if key is not None:
                info.key_name = key.name
            raw = await self._body(headers, receive)
            body = _parse(raw)
            watch = ex.watch = _Disconnect(receive, scope)
            previous = await self._previous(body, key)
            req = to_chat(body, previous.history if previous else None)
            ctx = replace(context_for(headers, key, request_id=info.request_id),
                          endpoint="responses")
            if not (headers.get("X-Conversation-ID") or "").strip():
                ctx = replace(ctx, conversation_id=_conversation(body, previous,
                                                                 ctx.conversation_id))
            history = previous.history if previous else []
            if req.stream:
                stream = await self.runtime.engine.stream(req.chat, ctx)
                info.provider = stream.provider_id
                ex.started = True
                await self._relay(stream, req, ctx, key, history, send, watch)
                return
            await self._complete(req, ctx, key, history, send, watch)
            ex.started = True

    async def _previous(self, body: object, key: KeyInfo | None) -> repo.ResponseRow | None:
        """The stored response ``previous_response_id`` names. Raises NotFound (404)."""
        previous = body.get("previous_response_id") if isinstance(body, dict) else None
        if not isinstance(previous, str) or not previous:
            return None
        store = self.runtime.store
        row = None
        if store is not None:
            name, admin = _reader(key)
            row = await asyncio.to_thread(repo.get_response, store, previous,
                                          key_name=name, admin=admin)
        if row is None:
            raise NotFound(f"Previous response with id {previous!r} not found (responses "
                           f"are kept only when stored with store: true).",
                           param="previous_response_id")
        return row

    async def _keep(self, req: ResponsesRequest, ctx: RequestContext, key: KeyInfo | None,
                    history: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """Store a finished answer when the client asked for it; a database that fails
        costs the continuation, not the answer (logged)."""
        store = self.runtime.store
        if not req.store or store is None:
            return
        answer = assistant_message(response["output"])
        kept = [*history, *req.input_messages, *([answer] if answer else [])]
        try:
            await asyncio.to_thread(
                repo.save_response, store, response_id=response["id"],
                request_id=ctx.request_id, key_name=key.name if key else None,
                conversation_id=ctx.conversation_id,
                previous_response_id=req.previous_response_id, body=response, history=kept)
        except Exception:
            log.exception("responses: could not store %s; it cannot be continued",
                          response["id"])

    def _created(self) -> int:
        return int(self.runtime.clock.time())

    async def _complete(self, req: ResponsesRequest, ctx: RequestContext,
                        key: KeyInfo | None, history: list[dict[str, Any]], send: Send,
                        watch: _Disconnect) -> None:
        done = await self.runtime.engine.complete(req.chat, ctx)
        req = _shown_model(req, done.model_id)
        response = response_from_completion(req, orjson.loads(done.body), new_id("resp"),
                                            self._created())
        await self._keep(req, ctx, key, history, response)
        watch.done()
        await _send_json(send, 200, orjson.dumps(response), (
            (b"x-conversation-id", (ctx.conversation_id or "").encode("latin-1")),
            (b"x-provider", done.provider_id.encode("latin-1")),
            (b"x-model", done.model_id.encode("latin-1")),
            *queue_wait_header(done.queue_wait_ms),
        ))

    async def _relay(self, stream: EngineStream, req: ResponsesRequest, ctx: RequestContext,
                     key: KeyInfo | None, history: list[dict[str, Any]], send: Send,
                     watch: _Disconnect) -> None:
        """Send the engine's stream as Responses events; closes the stream."""
        try:
            req = _shown_model(req, stream.model_id)
            events = ResponseStream(req, new_id("resp"), self._created())
            await send({"type": "http.response.start", "status": 200, "headers": [
                *_SSE_HEADERS,
                (b"x-conversation-id", (ctx.conversation_id or "").encode("latin-1")),
                (b"x-provider", stream.provider_id.encode("latin-1")),
                (b"x-model", stream.model_id.encode("latin-1")),
                *queue_wait_header(stream.queue_wait_ms),
            ]})
            await send({"type": "http.response.body", "body": events.start(),
                        "more_body": True})
            try:
                async for chunk in stream:
                    out = events.feed(chunk)
                    if out:
                        await send({"type": "http.response.body", "body": out,
                                    "more_body": True})
                end = events.finish()
            except Exception as exc:
                # The answer is under way: it ends with response.failed, not a cut.
                log.exception("responses: stream %s failed", ctx.request_id)
                end = events.failure_event("internal_error",
                                           f"Internal error in lai: {type(exc).__name__}")
            if events.succeeded and events.response is not None:
                await self._keep(req, ctx, key, history, events.response)
            watch.done()
            await send({"type": "http.response.body", "body": end, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # Frees the slot and closes the upstream response (cancelling it when the
            # stream did not finish), whatever ended the stream.
            await stream.aclose()

