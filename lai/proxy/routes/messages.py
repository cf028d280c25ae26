"""POST /v1/messages (also ``?beta=true``) and POST /v1/messages/count_tokens: the
Anthropic Messages API, served by the same engine as chat completions.

A bare ASGI endpoint in front of Quart, like ``lai.proxy.routes.chat`` and for the same
reasons: it owns the engine stream from the moment it exists (closed on every path, so a
client that leaves frees its queue place, slot and upstream request), and it answers
every refusal, the key check and 405/413 included, in Anthropic's error shape
(``lai.proxy.anthropic.errors``) instead of Quart's OpenAI-shaped handlers. Every other
path goes on to the next app.

The request is translated to an OpenAI chat body (``lai.proxy.anthropic.request``) and
routed like any chat request (aliases, queue, priority, failover, context-window check,
recording, metrics); a Claude Code request is recorded in its thread's conversation
(``lai.proxy.anthropic.session``). Providers that speak Messages themselves (type ``anthropic``, or
``messages_api = true``) get the client's own body, renamed
(``lai.engine.adapters.messages``), and their events come back as they were sent; the
others get the chat body, and their answer is translated back
(``lai.proxy.anthropic.answer``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import orjson

from lai.engine.adapters.messages import messages_adapters, speaks_messages
from lai.engine.requests import inspect_chat
from lai.engine.sse import SSEDecoder
from lai.engine.types import RequestContext
from lai.errors import LaiError, UpstreamError
from lai.proxy.access import RequestInfo, request_info
from lai.proxy.anthropic.answer import PassthroughRelay, StreamTranslator, message
from lai.proxy.anthropic.errors import error_body, http_error_body
from lai.proxy.anthropic.request import chat_body
from lai.proxy.anthropic.session import thread_conversation
from lai.proxy.auth import check_key
from lai.proxy.context import context_for
from lai.proxy.errors import TOO_LARGE
from lai.proxy.jsonbody import parse_body as _parse
from lai.proxy.routes.chat import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    _ClientGone,
    _Disconnect,
    _Headers,
    _HTTPError,
    _send_json,
    queue_wait_header,
    read_body,
)

if TYPE_CHECKING:
    from lai.engine.engine import Engine
    from lai.runtime import Runtime

log = logging.getLogger("lai.proxy")

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
ENDPOINT = "messages"
"""The ``endpoint`` label of these requests in the requests table and metrics."""


def _is_ours(path: str) -> bool:
    return path == MESSAGES or path.startswith(MESSAGES + "/")


def _latin1(value: str) -> bytes:
    return value.encode("latin-1", "replace")


def cap_max_tokens(engine: Engine, chat: dict[str, Any]) -> None:
    """Lower ``max_tokens`` to what the model that will answer may write (its
    ``max_tokens`` in the config; for ``auto`` the largest of any model). Anthropic
    clients ask for their own models' limits (Claude Code: 32000), which would fail the
    context-window check of most local models. Raises ModelNotFound."""
    name = chat["model"]
    if name == "auto":
        cap = max((m.max_tokens for m in engine.settings.models), default=chat["max_tokens"])
    else:
        cap = engine.catalog.explicit(name)[0].model.max_tokens
    chat["max_tokens"] = min(chat["max_tokens"], cap)


class _Progress:
    """Whether the response has begun (after that an error cannot be a response)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class MessagesEndpoint:
    """The ASGI app: the Messages paths here, everything else to ``app``."""

    def __init__(self, runtime: Runtime, app: ASGIApp) -> None:
        self.runtime = runtime
        self.app = app
        self.max_body = runtime.settings.server.max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = re.sub(r"/{2,}", "/", scope["path"])
        if not _is_ours(path):
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send, path)

    async def serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Answer ``scope``, a request for ``path`` under /v1/messages (slashes merged)."""
        progress = _Progress()
        watch: _Disconnect | None = None
        try:
            headers = _Headers(scope["headers"])
            info = request_info(scope)  # the id x-request-id and the access log carry
            key = await check_key(self.runtime, scope["method"], path, headers, scope)
            if key is not None:
                info.key_name = key.name
            if path not in (MESSAGES, COUNT_TOKENS):
                raise _HTTPError(404, f"No such endpoint: {path}. lai serves {MESSAGES} and "
                                      f"{COUNT_TOKENS}.")
            if scope["method"] != "POST":
                raise _HTTPError(405, f"{path} answers POST only.")
            raw = await self._body(headers, receive)
            info.route = path
            ctx = replace(context_for(headers, key, request_id=info.request_id),
                          endpoint=ENDPOINT)
            body = _parse(raw)
            thread = thread_conversation(headers, body)
            if thread is not None:
                ctx = replace(ctx, conversation_id=thread)
            if path == COUNT_TOKENS:
                await self._count(send, body)
                return
            chat = chat_body(body)
            cap_max_tokens(self.runtime.engine, chat)
            watch = _Disconnect(receive, scope)
            adapters = messages_adapters(cast(dict[str, Any], body))  # chat_body checked it
            if chat.get("stream"):
                await self._stream(send, chat, ctx, watch, progress, adapters, info)
            else:
                await self._complete(send, chat, ctx, watch, progress, adapters, info)
        except asyncio.CancelledError:
            if watch is None or not watch.gone:
                raise
            # The client went away: the engine has let go of everything; nothing to send.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except _ClientGone:
            pass
        except LaiError as err:
            if progress.started:
                raise
            await _send_json(send, err.status, error_body(err),
                             [(k.lower().encode(), v.encode()) for k, v in err.headers().items()])
        except _HTTPError as err:
            extra = [(b"allow", b"POST")] if err.status == 405 else []
            await _send_json(send, err.status, http_error_body(err.status, err.message), extra)
        except Exception as err:
            if progress.started:
                raise  # the response is under way: the server closes the connection
            log.exception("unhandled error")
            await _send_json(send, 500, http_error_body(
                500, f"Internal error in lai: {type(err).__name__}"))
        finally:
            if watch is not None:
                watch.done()

    @staticmethod
    def _answer_model(chat: dict[str, Any], model_id: str) -> str:
        # The name the client asked for (an alias stays the alias); lai's id for auto.
        return model_id if chat["model"] == "auto" else chat["model"]

    @staticmethod
    def _headers(ctx: RequestContext, provider_id: str, model_id: str,
                 queue_wait_ms: float | None) -> list[tuple[bytes, bytes]]:
        return [(b"x-conversation-id", _latin1(ctx.conversation_id or "")),
                (b"x-provider", _latin1(provider_id)), (b"x-model", _latin1(model_id)),
                (b"request-id", _latin1(ctx.request_id)), *queue_wait_header(queue_wait_ms)]

    async def _count(self, send: Send, body: Any) -> None:
        """lai's estimate of the prompt (about four characters a token, images and
        tools included), not the upstream tokenizer's count. Raises InvalidRequest,
        ModelNotFound."""
        chat = chat_body(body, counting=True)
        if chat["model"] != "auto":
            self.runtime.engine.catalog.explicit(chat["model"])
        tokens = inspect_chat(chat).prompt_tokens
        await _send_json(send, 200, orjson.dumps({"input_tokens": tokens}))

    async def _complete(self, send: Send, chat: dict[str, Any], ctx: RequestContext,
                        watch: _Disconnect, progress: _Progress, adapters: Any,
                        info: RequestInfo) -> None:
        """Serve a non-streamed answer. Raises what Engine.complete raises, and
        UpstreamError (502) for an answer that cannot be made a message."""
        engine = self.runtime.engine
        done = await engine.complete(chat, ctx, adapters=adapters)
        info.provider = done.provider_id
        watch.done()
        model = self._answer_model(chat, done.model_id)
        provider = engine.settings.provider(done.provider_id)
        try:
            doc = orjson.loads(done.body)
            if provider is not None and speaks_messages(provider):
                if not isinstance(doc, dict):
                    raise ValueError("the upstream's message is not an object")
                doc.pop("cost_usd", None)  # lai's addition to chat answers; not Anthropic's
                answer = {**doc, "model": model}
            else:
                answer = message(doc, model=model, message_id=_message_id(ctx))
        except ValueError as exc:  # the adapters checked it; this is a broken answer
            raise UpstreamError(f"{done.provider_id}'s answer could not be made a "
                                f"message: {exc}.") from None
        progress.started = True
        await _send_json(send, 200, orjson.dumps(answer),
                         self._headers(ctx, done.provider_id, done.model_id,
                                       done.queue_wait_ms))

    async def _stream(self, send: Send, chat: dict[str, Any], ctx: RequestContext,
                      watch: _Disconnect, progress: _Progress, adapters: Any,
                      info: RequestInfo) -> None:
        """Serve a streamed answer. Raises what Engine.stream raises, before anything
        was sent (``progress.started`` says whether the response has begun)."""
        estimate = inspect_chat(chat).prompt_tokens
        stream = await self.runtime.engine.stream(chat, ctx, adapters=adapters)
        info.provider = stream.provider_id
        try:
            model = self._answer_model(chat, stream.model_id)
            relay: StreamTranslator | PassthroughRelay
            if speaks_messages(stream.candidate.provider):
                relay = PassthroughRelay(model=model)
                head = b""
            else:
                relay = translator = StreamTranslator(
                    model=model, message_id=_message_id(ctx), input_tokens=estimate)
                head = translator.start()
            progress.started = True
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
                *self._headers(ctx, stream.provider_id, stream.model_id,
                              stream.queue_wait_ms),
            ]})
            decoder = SSEDecoder()
            async for chunk in stream:
                out = head + b"".join(relay.feed(name, data) for name, data in decoder.feed(chunk))
                head = b""
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = head + b"".join(relay.feed(name, data) for name, data in decoder.close())
            tail += relay.finish()
            if relay.failed:
                log.warning("request %s: stream on %s ended with an error event",
                            ctx.request_id, MESSAGES)
            watch.done()
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            # Frees the slot and closes the upstream response, which cancels the
            # upstream request when the stream did not finish.
            await stream.aclose()

    async def _body(self, headers: _Headers, receive: Receive) -> bytes:
        """The request body. Raises _HTTPError (413, 408) and _ClientGone."""
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _HTTPError(413, TOO_LARGE)
        return await read_body(receive, self.max_body)


def _message_id(ctx: RequestContext) -> str:
    # The request id inside: a message a user quotes leads to its row in the requests table.
    return "msg_" + ctx.request_id.removeprefix("req_")
