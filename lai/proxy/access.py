"""The outermost layer of the app: a request id on every response, and the access log.

``AccessLog`` wraps the whole ASGI app (the bare chat endpoint and Quart alike), so that

- every HTTP request gets lai's own request id (``req_`` + 24 hex), sent back as the
  ``x-request-id`` response header and used by the engine for the ``requests`` row
  (``lai.proxy.context`` reads it from the scope). An ``x-request-id`` a client sends is
  not taken over: the id is the row's unique key, and a client's could repeat;
- one log line per request goes to the ``lai.access`` logger (``server.access_log``):
  method, path (without the query string, which can carry search terms), status,
  duration, key name, provider and request id, as text or as one JSON object
  (``server.access_log_format``);
- every response is counted by route and status in ``/metrics``
  (``local_ai_http_responses_total``), 404s on unknown paths included;
- an exception that escapes the app before its response started still gets an
  OpenAI-shaped JSON answer instead of Hypercorn's empty 500;
- an answer decided before the request body is in (401, 413 from Content-Length) is
  held until the rest of the body has been read and dropped (up to ``DRAIN_BYTES`` and
  ``DRAIN_SECONDS``), as nginx's lingering close does. Hypercorn otherwise closes at
  once, the client's kernel resets the connection for the body it is still sending, and
  the client often never reads the answer (measured: 4 of 40 1 MB bodies with a bad key
  got "Server disconnected without sending a response"); drained, the connection even
  serves its next request.

A request that ends without a response (the client went away first) is logged with
status 499, as nginx does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from quart import Quart, request

from lai.engine.types import new_request_id
from lai.proxy.errors import internal_error_body

if TYPE_CHECKING:
    from lai.proxy.metrics import ProxyMetrics
    from lai.runtime import Runtime

log = logging.getLogger("lai.proxy")
access_log = logging.getLogger("lai.access")

SCOPE_KEY = "lai.request"
"""Where the request's :class:`RequestInfo` lives in the ASGI scope."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405)."""
CLIENT_GONE = 499
MAX_PATH = 300
"""Characters of the path a log line keeps."""
DRAIN_SECONDS = 5.0
DRAIN_BYTES = 64 * 1024 * 1024
"""How long, and how much of an unread request body, is read and dropped (see above)."""

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class RequestInfo:
    """What the layers below learn about a request, for its log line and metrics."""

    __slots__ = ("key_name", "provider", "request_id", "route")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.key_name: str | None = None
        self.provider: str | None = None
        self.route: str | None = None
        """The matched route's rule (``/v1/conversations/<conversation_id>``), a bounded
        label; None when no route matched."""


def request_info(scope: Any) -> RequestInfo:
    """The request's info, made here when no ``AccessLog`` is in front (a bare app)."""
    info: RequestInfo | None = scope.get(SCOPE_KEY)
    if info is None:
        info = scope[SCOPE_KEY] = RequestInfo(new_request_id())
    return info


class _BodyTracker:
    """The app's ``receive``, noting when the request body is complete (or the client
    gone), so that the last part of an early answer can wait for the body to be read."""

    __slots__ = ("_receive", "done")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.done.set()
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body, up to DRAIN_BYTES and DRAIN_SECONDS. The
        app (Quart's body reader) may be reading at the same time: whoever gets the last
        part, ``done`` is set."""
        left = DRAIN_BYTES
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while not self.done.is_set() and left > 0:
                    get = asyncio.ensure_future(self.receive())
                    finished = asyncio.ensure_future(self.done.wait())
                    try:
                        await asyncio.wait((get, finished), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        get.cancel()
                        finished.cancel()
                    if get.done() and not get.cancelled():
                        left -= len(get.result().get("body", b""))


def receive_ready(receive: Receive) -> bool:
    """Whether ``await receive()`` returns at once: a message already waits in the
    server's queue (Hypercorn hands each app its queue's ``get``; ``AccessLog`` wraps it).
    Reading it then needs no timeout, and a timeout costs a timer (~4.7 us under uvloop,
    bench/README.md). False whenever that cannot be told."""
    owner = getattr(receive, "__self__", None)
    if isinstance(owner, _BodyTracker):
        owner = getattr(owner._receive, "__self__", None)
    return isinstance(owner, asyncio.Queue) and not owner.empty()


def install_route_labels(app: Quart) -> None:
    """Record each Quart request's matched rule (the metrics' ``route`` label)."""

    @app.before_request
    async def _label() -> None:
        rule = request.url_rule
        request_info(request.scope).route = rule.rule if rule is not None else None


class AccessLog:
    """The ASGI wrapper described in the module docstring."""

    def __init__(self, runtime: Runtime, app: ASGIApp, metrics: ProxyMetrics) -> None:
        self.app = app
        self.runtime = runtime  # access_log read per request: a config reload may change it
        # The format is fixed at start, as `lai proxy`'s log handler for it is.
        self.json = runtime.settings.server.access_log_format == "json"
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = RequestInfo(new_request_id())
        scope[SCOPE_KEY] = info
        header = (b"x-request-id", info.request_id.encode())
        status = CLIENT_GONE
        started = False
        t0 = time.perf_counter()
        request_body = _BodyTracker(receive)

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            elif not request_body.done.is_set() and not message.get("more_body", False):
                await request_body.drain()
            await send(message)

        try:
            await self.app(scope, request_body.receive, send_with_id)
        except Exception as err:
            if started:
                raise  # the response is under way: the server closes the connection
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            body = internal_error_body(err)
            await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            self.metrics.count_response(info.route or UNMATCHED, status)
            server = self.runtime.settings.server
            if server.access_log:
                self._log(scope, info, status, (time.perf_counter() - t0) * 1000, self.json)

    def _log(self, scope: dict[str, Any], info: RequestInfo, status: int, ms: float,
             as_json: bool) -> None:
        # The path as it came (h11 lets only visible ASCII through), not the decoded
        # one: a %0a in it must not start a forged log line.
        raw = scope.get("raw_path")
        path = raw.decode("ascii", "replace") if raw else scope["path"]
        path = path[:MAX_PATH]
        if as_json:
            line = orjson.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "method": scope["method"], "path": path, "status": status,
                "duration_ms": round(ms, 1), "key": info.key_name,
                "provider": info.provider, "request_id": info.request_id,
            }).decode()
            access_log.info("%s", line)
        else:
            access_log.info("%s %s %s %.1fms key=%s provider=%s request_id=%s",
                            scope["method"], path, status, ms,
                            info.key_name or "-", info.provider or "-", info.request_id)
