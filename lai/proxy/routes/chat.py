"""POST /v1/chat/completions, streamed and not: a bare ASGI endpoint in front of Quart.

Every request pays for this route, so it is served without Quart's per-request
machinery (request and app contexts, werkzeug wrappers, a task to read the body, the
response object): measured with ``bench/run.py``, that machinery was about 0.4 ms of
each request, the largest single part of what lai added (bench/README.md). Every other
path and method goes to the Quart app, which answers OPTIONS and 405 here too.

It keeps the contract of the Quart routes: the key check of ``lai.proxy.auth``, the
``server.max_body_size`` limit (413), OpenAI-shaped errors (``lai.proxy.errors``), the
X-Conversation-ID / X-Provider / X-Model headers (and X-Queue-Wait-Ms for a request that
waited for a slot), and a client that goes away, while
queued or streaming, cancels its request (its queue place, slot and upstream request
are freed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from quart import Blueprint
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect

from lai.errors import LaiError
from lai.proxy.access import receive_ready, request_info
from lai.proxy.auth import check_key
from lai.proxy.connection import DISCONNECT, Disconnected
from lai.proxy.context import context_for
from lai.proxy.errors import TOO_LARGE, http_error_body, internal_error_body
from lai.proxy.jsonbody import parse_body

if TYPE_CHECKING:
    from lai.runtime import Runtime

log = logging.getLogger("lai.proxy")

PATH = "/v1/chat/completions"
BODY_TIMEOUT = 120.0
"""Seconds a client may take to send its body (Quart's BODY_TIMEOUT elsewhere)."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

bp = Blueprint("chat", __name__)


ENDPOINT = "chat._rule"
"""The Quart endpoint name of the URL rule below."""


@bp.route(PATH, methods=["POST"])
async def _rule() -> Any:
    # Only the URL rule is used: with it Quart answers OPTIONS and 405 for this path as
    # for any other. POST is served by ChatEndpoint (create_app puts it in front).
    raise RuntimeError(f"POST {PATH} reached Quart: ChatEndpoint is not installed")


class _Headers:
    """Case-insensitive lookup over ASGI headers; the first value wins, as in werkzeug."""

    __slots__ = ("_values",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        for name, value in raw:
            values.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self._values = values

    def get(self, key: str) -> str | None:
        return self._values.get(key.lower())


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    pass


class _Disconnect:
    """Cancels the serving task when the client goes away, until ``done()``: what
    Quart does for its routes, so a queued or streaming request lets go at once. Told
    by lai's HTTP/1.1 protocol (``lai.proxy.connection.DISCONNECT`` in ``scope``), else
    by a task that waits on ``receive`` for ``http.disconnect``."""

    def __init__(self, receive: Receive, scope: Scope | None = None) -> None:
        self.gone = False
        self._done = False
        self._serving = asyncio.current_task()
        extensions = scope.get("extensions") if scope is not None else None
        self._told: Disconnected | None = (extensions or {}).get(DISCONNECT)
        self._watch: asyncio.Task[None] | None = None
        if self._told is not None:
            self._told.add(self._gone)
        else:
            self._watch = asyncio.get_running_loop().create_task(self._run(receive))

    async def _run(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone()

    def _gone(self) -> None:
        if not self._done and self._serving is not None:
            self.gone = True
            self._serving.cancel()

    def done(self) -> None:
        self._done = True
        if self._told is not None:
            self._told.discard(self._gone)
        if self._watch is not None:
            self._watch.cancel()


def queue_wait_header(waited_ms: float | None) -> list[tuple[bytes, bytes]]:
    """``X-Queue-Wait-Ms`` (whole milliseconds) for a request that waited in the queue
    for a slot; nothing for one that found a slot at once."""
    return [] if waited_ms is None else [(b"x-queue-wait-ms", b"%d" % round(waited_ms))]


def _json_start(status: int, body: bytes, extra: Iterable[tuple[bytes, bytes]] = ()) -> Scope:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers.extend(extra)
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _send_json(send: Send, status: int, body: bytes,
                     extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send(_json_start(status, body, extra))
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Exchange:
    """One request's state at the error boundary: whether its answer has begun, and the
    watch that cancels it when the client goes away."""

    __slots__ = ("started", "watch")

    def __init__(self) -> None:
        self.started = False
        self.watch: _Disconnect | None = None


class answer_errors:  # noqa: N801 - used as a function: ``async with answer_errors(send)``
    """The one place an OpenAI-shaped endpoint turns what ends a request into its answer:
    a client gone (nothing to send; the engine has let go of everything), a LaiError or
    an HTTP-level refusal (their JSON), anything else (a logged 500). Once the answer has
    begun, an error propagates and the server closes the connection. The watch, if any,
    is done on every way out.

    A class rather than ``contextlib.asynccontextmanager``: every chat request enters it,
    and the generator-based form cost ~1.6 us against ~0.4 (bench/README.md)."""

    __slots__ = ("ex", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.ex = Exchange()

    async def __aenter__(self) -> Exchange:
        return self.ex

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> bool:
        ex = self.ex
        try:
            return await self._answer(err) if err is not None else False
        finally:
            if ex.watch is not None:
                ex.watch.done()

    async def _answer(self, err: BaseException) -> bool:
        """True when ``err`` is answered (or needs no answer); False to let it go on."""
        ex, send = self.ex, self.send
        if isinstance(err, asyncio.CancelledError):
            if ex.watch is None or not ex.watch.gone:
                return False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return True
        if isinstance(err, _ClientGone):
            return True
        if isinstance(err, LaiError):
            if ex.started:
                return False
            await _send_json(send, err.status, orjson.dumps(err.to_dict()),
                             [(k.lower().encode(), v.encode()) for k, v in err.headers().items()])
            return True
        if isinstance(err, _HTTPError):
            await _send_json(send, err.status, http_error_body(err.status, err.message))
            return True
        if not isinstance(err, Exception) or ex.started:
            return False  # under way: the server closes the connection
        log.error("unhandled error", exc_info=err)
        await _send_json(send, 500, internal_error_body(err))
        return True


class ChatEndpoint:
    """The ASGI app: POST /v1/chat/completions here, everything else to ``app``.

    Which requests are the chat route is Quart's decision, not a second one made here:
    the exact path is the fast case, and any other POST path is matched against the
    app's URL map (``url_map``) as Quart would match it (``//v1/chat/completions`` and
    an absolute-form target ``http://host/v1/chat/completions`` are the chat route there
    too), so the placeholder route is never reached.
    """

    def __init__(self, runtime: Runtime, app: ASGIApp, url_map: Map) -> None:
        self.runtime = runtime
        self.app = app
        self.url_map = url_map

    def _is_chat(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path: str = scope["path"]
        if path == PATH:
            return True
        # Quart's own reading of the target (quart.asgi): absolute form gives its path.
        if not path.startswith("/"):
            path = urlsplit(path).path
        try:
            endpoint, _args = self.url_map.bind("lai", script_name=scope.get("root_path") or None
                                                ).match(path or "/", method="POST")
        except RequestRedirect as redirect:  # e.g. /v1//chat/completions: merged slashes
            return urlsplit(redirect.new_url).path == PATH
        except HTTPException:  # 404, 405: Quart answers those
            return False
        return endpoint == ENDPOINT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_chat(scope):
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``scope``, a chat request (``__call__`` decided; ``lai.proxy.app``'s
        routes for the exact path)."""
        info = request_info(scope)
        info.route = PATH
        async with answer_errors(send) as ex:
            headers = _Headers(scope["headers"])
            key = await check_key(self.runtime, "POST", PATH, headers, scope)
            if key is not None:
                info.key_name = key.name
            raw = await self._body(headers, receive)
            ctx = context_for(headers, key, request_id=info.request_id)
            body = parse_body(raw)
            watch = ex.watch = _Disconnect(receive, scope)
            conversation = (ctx.conversation_id or "").encode("latin-1")
            if isinstance(body, dict) and body.get("stream") is True:
                stream = await self.runtime.engine.stream(body, ctx)
                info.provider = stream.provider_id
                try:
                    ex.started = True
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                        (b"x-conversation-id", conversation),
                        (b"x-provider", stream.provider_id.encode("latin-1")),
                        (b"x-model", stream.model_id.encode("latin-1")),
                        *queue_wait_header(stream.queue_wait_ms),
                    ]})
                    async for chunk in stream:
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})
                    watch.done()
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    # Frees the slot and closes the upstream response, which cancels the
                    # upstream request when the stream did not finish.
                    await stream.aclose()
                return
            done = await self.runtime.engine.complete(body, ctx)
            info.provider = done.provider_id
            watch.done()
            ex.started = True
            await _send_json(send, 200, done.body, (
                (b"x-conversation-id", conversation),
                (b"x-provider", done.provider_id.encode("latin-1")),
                (b"x-model", done.model_id.encode("latin-1")),
                *queue_wait_header(done.queue_wait_ms),
            ))

    async def _body(self, headers: _Headers, receive: Receive) -> bytes:
        """The request body. Raises _HTTPError (413, 408) and _ClientGone."""
        length = headers.get("content-length")
        limit = self.runtime.settings.server.max_body_size  # a reload may change it
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            raise _HTTPError(413, TOO_LARGE)
        return await read_body(receive, limit)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, within BODY_TIMEOUT seconds. Raises
    _HTTPError (413, 408) and _ClientGone."""
    chunks: list[bytes] = []
    size = 0
    deadline = asyncio.get_running_loop().time() + BODY_TIMEOUT
    try:
        while True:
            if receive_ready(receive):  # the usual case: the body came with the head
                message = await receive()
            else:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _HTTPError(413, TOO_LARGE)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except TimeoutError:
        raise _HTTPError(408, "The client did not send its request body in time.") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
