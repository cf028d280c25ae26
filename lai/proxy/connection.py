"""lai's HTTP/1.1 connections inside Hypercorn 0.18, past its public API.

``install()`` (called by ``lai.proxy.serve.serve_app``) puts two subclasses in Hypercorn's
place: ``_TCPServer``, the connection handler (a cheaper keep-alive timer, writes
gathered per loop turn, bounded back-pressure), and ``_H11Protocol``, which

- answers malformed HTTP (bad framing 400, headers over ``h11_max_incomplete_size`` 431,
  ...) with an OpenAI-shaped JSON body instead of Hypercorn's empty one;
- closes a connection whose request headers are not complete ``server.header_timeout``
  seconds after the connection opened or the request's first byte arrived (Hypercorn
  only knows its 75 s keep-alive, so a client trickling a byte a second held a
  connection that long);
- writes an ordinary response's head and body itself, h11's state machine left where
  ``send`` would leave it (``lai.proxy.h11write``);
- tells a request at once that its client has gone (``DISCONNECT``).

``LaiConfig`` makes the ``date`` and ``server`` headers once a second. Each says why
Hypercorn's own behaviour was not enough; ``install()`` checks the Hypercorn and h11
releases they were written for.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import hypercorn.asyncio.run
import hypercorn.protocol
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream

from lai.proxy.errors import http_error_body
from lai.proxy.h11write import H11_SERIES, body_piece, response_head

log = logging.getLogger("lai.proxy")

HYPERCORN_SERIES = "0.18."
"""The Hypercorn release the extensions in this module were written against."""
HEADER_TIMEOUT = 10.0
"""Default seconds a client has to send a complete request head (server.header_timeout)."""


class LaiConfig(Config):
    """Hypercorn's settings, with the ``date`` and ``server`` headers of a response made
    once a second rather than once a response (formatting the date was ~2% of the event
    loop's time at 1 client; bench/README.md)."""

    _headers_at: tuple[str, int] | None = None
    _headers: list[tuple[bytes, bytes]] = []

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        at = (protocol, int(time.time()))
        if at != self._headers_at:
            self._headers = super().response_headers(protocol)
            self._headers_at = at
        return list(self._headers)


@dataclass(frozen=True)
class _Flush(Event):
    """From ``_H11Protocol`` to ``_TCPServer``: write what is waiting now, not at the end
    of this turn of the event loop."""


_WRITE_HIGH = 16 * 1024
"""Bytes waiting in lai to be sent at which a connection waits for the socket to drain."""

SEND_BUFFER = 64 * 1024
"""SO_SNDBUF of a client's TCP connection: what the kernel holds for a client that does
not read. Left to itself Linux grows it to ``net.ipv4.tcp_wmem``'s maximum (4 MiB here),
so a client that never read took a 4 MB answer whole into the kernel and lai read the
upstream to its end. 64 KiB still carries ~50 MB/s at 1 ms and ~1.3 MB/s at 50 ms of
round trip; a token stream needs a few KB/s."""


class _TCPServer(TCPServer):
    """Hypercorn's connection handler with a cheaper, tighter keep-alive timer.

    - A connection the client closed is let go at once. Hypercorn 0.18 stops the timer
      only when the server closes the connection: after the client hangs up, its tasks
      and buffers (~100 KB) lived on until ``keep_alive_timeout`` (75 s here). Measured
      with bench/run.py, RSS grew ~3 MiB per 32 connections.
    - One timer task per connection, which follows the idle/busy state. Hypercorn starts
      a new timer task (and cancels it) around every request: ~7% of the event loop's
      time at 32 clients in the bench.
    - The bytes written in one turn of the event loop (a response's head, body and end)
      leave in one ``write``, not one each with a lock and a drain.
    - Back-pressure with a bound: at most ``_WRITE_HIGH`` bytes wait in lai and
      ``SEND_BUFFER`` in the kernel for a client that does not read; then the app's
      ``send`` waits, so a stream stops reading its upstream (docs/routing.md).

    Shutdown behaves as before: an idle connection is closed at once, a busy one as soon
    as its response is out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_since: float | None = self.loop.time()
        self._out: list[bytes] = []
        self._out_size = 0
        transport = self.writer.transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_HIGH // 4)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    async def protocol_send(self, event: Event) -> None:
        # Exact types: Hypercorn's events are final, and an isinstance that misses its
        # ABC costs ~0.17 us; a request sends about eight of them.
        if type(event) is _Flush:
            self._flush()
            return
        if type(event) is Updated:
            self._idle_since = self.loop.time() if event.idle else None
            return
        if type(event) is RawData:
            if not event.data:
                return
            if self.writer.transport.is_closing():
                # The client is gone. uvloop drops writes to a closed transport without
                # raising, so a stream would go on reading its upstream into nothing.
                await self._client_gone()
                return
            self._out.append(event.data)
            self._out_size += len(event.data)
            if len(self._out) == 1:
                self.loop.call_soon(self._flush)
            if self._out_size + self.writer.transport.get_write_buffer_size() > _WRITE_HIGH:
                # Back-pressure for large bodies, as Hypercorn's own drain after each write.
                async with self.send_lock:
                    try:
                        self._flush()
                        await self.writer.drain()
                    except (ConnectionError, RuntimeError):
                        await self._client_gone()
            return
        await super().protocol_send(event)

    async def _client_gone(self) -> None:
        await self.protocol.handle(Closed())
        # The app's next send would return at once, and a stream whose upstream has
        # bytes ready never yields: let the disconnect watcher run and cancel it first.
        await asyncio.sleep(0)

    def _flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError):  # the connection is gone
            self._task_group.spawn(self.protocol.handle, Closed())

    async def _close(self) -> None:
        self._flush()
        await super()._close()

    async def _initiate_server_close(self) -> None:
        self._flush()
        await super()._initiate_server_close()

    async def _idle_timeout(self) -> None:
        # Started once when the connection opens (TCPServer.run), stopped when it closes.
        timeout = self.config.keep_alive_timeout
        terminated = self.context.terminated
        while True:
            since = self._idle_since
            if since is None:  # a request in flight
                if terminated.is_set():
                    await asyncio.sleep(0.05)  # shutting down: close once it is answered
                    continue
                left = timeout
            else:
                left = since + timeout - self.loop.time()
                if left <= 0 or terminated.is_set():
                    break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await terminated.wait()
        await asyncio.shield(self._initiate_server_close())

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            await self.idle_task.stop()


_MALFORMED = {
    400: "Malformed HTTP request.",
    408: "The request head was not complete within server.header_timeout.",
    414: "The request target is too long.",
    431: "The request headers are too large.",
    501: "This transfer encoding is not supported.",
}


def _error_bytes(status: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = http_error_body(status, _MALFORMED.get(status, "Malformed HTTP request."))
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    return headers, body


DISCONNECT = "lai.disconnect"
"""The scope extension (``scope["extensions"][DISCONNECT]``) by which ``_H11Protocol``
tells the app at once that the client has gone: a :class:`Disconnected`. ASGI says it
with an ``http.disconnect`` message, which only a task waiting on ``receive`` sees; a
request that must let go when its client leaves (``lai.proxy.routes.chat._Disconnect``)
needed such a task, ~6 us a request (bench/README.md). Without the extension (another
server, HTTP/2) the task it is."""


class Disconnected:
    """Callbacks run once, when the connection of a request closes while it is served."""

    __slots__ = ("_callbacks", "gone")

    def __init__(self) -> None:
        self.gone = False
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the client goes; at once if it has gone already."""
        if self.gone:
            callback()
        else:
            self._callbacks.append(callback)

    def discard(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def fire(self) -> None:
        if not self.gone:
            self.gone = True
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()


class _H11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol with JSON error answers, a header timeout and
    cheaper response heads and bodies (``lai.proxy.h11write``)."""

    lean_heads = False
    """Whether ``lai.proxy.h11write`` may write: set by ``install`` for the h11 release
    it was written for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._disconnected: Disconnected | None = None
        """The request being served's (``DISCONNECT``)."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_timeout: float = getattr(self.config, "lai_header_timeout", HEADER_TIMEOUT)
        self._head_waiting = False
        """A response head was written and no body yet: its first body flushes both."""

    async def stream_send(self, event: StreamEvent) -> None:
        data = self._lean_bytes(event) if self.lean_heads else None
        if data is None:
            await super().stream_send(event)
        elif data:
            await self.send(RawData(data=data))
        # The head and the first body leave together, at once; so does the end of a
        # response. Left to the end of the loop's turn, they waited for whatever the app
        # did next without yielding: a stream whose upstream sent everything in one read
        # wrote its first token only after the whole answer was parsed, the request
        # reported, the slot freed and the access line written (bench/README.md).
        if isinstance(event, Response):
            self._head_waiting = True
        elif isinstance(event, EndBody) or (isinstance(event, Body) and self._head_waiting):
            self._head_waiting = False
            await self.send(_Flush())

    def _lean_bytes(self, event: StreamEvent) -> bytes | None:
        """What h11 would write for ``event``, made here for an ordinary response head
        (``lai.proxy.h11write``) and a piece of body; None for h11's own path (anything
        else). b"" when h11 refuses it on a connection the client already broke, which
        Hypercorn's ``_send_h11_event`` swallows too. Raises h11.LocalProtocolError."""
        conn = self.connection
        if type(conn) is not h11.Connection:
            return None
        try:
            if isinstance(event, Response):
                return self._plain_head(conn, event)
            if isinstance(event, Body) and conn.our_state is h11.SEND_BODY:
                return body_piece(conn, event.data)
        except h11.LocalProtocolError:
            if conn.their_state is not h11.ERROR:
                raise
            return b""
        return None

    def _plain_head(self, conn: h11.Connection, event: Response) -> bytes | None:
        status = event.status_code
        if (status < 200 or status in (204, 304) or conn.our_state is not h11.SEND_RESPONSE
                or conn.their_http_version != b"1.1" or not conn._cstate.keep_alive
                or conn._request_method in (b"HEAD", b"CONNECT")
                or self.keep_alive_requests >= self.config.keep_alive_max_requests):
            return None  # h11 adds or drops headers of its own for these
        return response_head(conn, status,
                              [*event.headers, *self.config.response_headers("h11")])

    async def initiate(self) -> None:
        await super().initiate()
        self._start_head_timer()  # a new connection owes its first request head

    async def _create_stream(self, request: h11.Request) -> None:
        await super()._create_stream(request)
        # The app's task is made but has not run yet: it finds the extension in place.
        stream = self.stream
        if type(stream) is HTTPStream:
            self._disconnected = Disconnected()
            extensions: dict[str, Any] = stream.scope["extensions"]
            extensions[DISCONNECT] = self._disconnected

    async def handle(self, event: Event) -> None:
        if type(event) is Closed and self.stream is not None and self._disconnected:
            # As Hypercorn, which then sends http.disconnect to the request still open.
            self._disconnected.fire()
        # The first bytes of a request head: the timer runs from here unless they hold
        # the whole head, as they nearly always do. It is started only after h11 has
        # read them, so a request that comes in one piece costs no timer (a call_later
        # and a cancel per request, bench/README.md).
        first_bytes = (type(event) is RawData and bool(event.data)
                       and self._head_timer is None and self._awaiting_head())
        await super().handle(event)
        if type(event) is Closed or not self._awaiting_head():
            self._stop_head_timer()
        elif first_bytes and self._head_timer is None:
            self._start_head_timer()

    def _awaiting_head(self) -> bool:
        conn = self.connection
        return isinstance(conn, h11.Connection) and conn.their_state is h11.IDLE

    def _start_head_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head():
            self.task_group.spawn(self._close_slow_client)

    async def _close_slow_client(self) -> None:
        if not self._awaiting_head():
            return
        if isinstance(self.connection, h11.Connection) and self.connection.our_state is h11.IDLE:
            # h11 cannot send a response before a request: the bytes are written as is.
            headers, body = _error_bytes(408)
            head = b"".join(b"%s: %s\r\n" % pair for pair in headers)
            await self.send(RawData(b"HTTP/1.1 408 Request Timeout\r\n" + head + b"\r\n" + body))
        await self.send(Closed())

    async def _send_error_response(self, status_code: int) -> None:
        headers, body = _error_bytes(status_code)
        await self._send_h11_event(h11.Response(
            status_code=status_code,
            headers=headers + list(self.config.response_headers("h11"))))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def install() -> None:
    """Serve HTTP/1.1 with lai's connection handler and protocol (above); with a Hypercorn
    release other than the one they were written for, warn and leave Hypercorn's own."""
    # worker_serve makes each connection's handler from this module-level name, and
    # ProtocolWrapper its HTTP/1.1 protocol from hypercorn.protocol's.
    version = importlib.metadata.version("hypercorn")
    if not version.startswith(HYPERCORN_SERIES):
        log.warning("hypercorn %s: lai's extensions were written for %sx; serving "
                    "without them", version, HYPERCORN_SERIES)
        return
    hypercorn.asyncio.run.TCPServer = _TCPServer  # type: ignore[misc]
    hypercorn.protocol.H11Protocol = _H11Protocol  # type: ignore[misc]
    h11_version = importlib.metadata.version("h11")
    _H11Protocol.lean_heads = h11_version.startswith(H11_SERIES)
    if not _H11Protocol.lean_heads:
        log.warning("h11 %s: lai's response heads were written for %sx; h11 writes them",
                    h11_version, H11_SERIES)
