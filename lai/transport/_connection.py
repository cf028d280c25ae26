"""One HTTP/1.1 connection to an upstream, parsed by httptools as it is read: what
``lai.transport``'s pool keeps (see the package docstring)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable

import httptools
import httpx

_Origin = tuple[bytes, str, int]

_HIGH_WATER = 16 * 1024
"""Buffered response bytes at which reading from the upstream pauses (and resumes below
half of it): with one read (``_READ_SIZE``) what lai holds of an answer its reader is not
taking, per connection."""

_READ_SIZE = 32 * 1024
"""Bytes read from an upstream socket at a time. The event loop's own reads are 256 KiB,
all of it parsed and buffered before reading can pause."""

_CLOSED_EARLY = "Server disconnected without sending a complete response."

class _Retry(Exception):
    """A reused connection failed before any byte of an answer: send again elsewhere."""


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, one request at a time. Reads into ``read_buffer``, which
    connections may share: each read is parsed (and its body bytes copied out) before
    the next one."""

    def __init__(self, origin: _Origin, read_buffer: bytearray) -> None:
        self.origin = origin
        self._read_buffer = memoryview(read_buffer)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._request: httpx.Request | None = None
        self._busy = False
        """A request is under way (sent, its answer not let go of)."""
        self._error: Exception | None = None
        self._got_bytes = False
        # The current response.
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._until_close = False
        self.complete = False
        self._keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False

    # -- the protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if not self._busy:
            # Bytes on an idle connection answer nothing lai asked: parsed, they would
            # become the start of the next request's answer. The pool drops it.
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # Stray bytes after a whole answer end here too: the answer stands, the
            # connection is not kept. Either way the reader must wake (connection_lost
            # does not when the answer is complete).
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}",
                                                 request=self._request))
            self.close()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._busy or self.complete:
            return
        if self._head_done and self._until_close and exc is None:
            self.complete = True  # a body that ends with the connection
        elif isinstance(exc, ConnectionResetError):
            self._fail(httpx.ReadError("connection reset by peer", request=self._request))
        elif self.reused and not self._got_bytes and exc is None:
            # The server closed a kept-alive connection as we sent on it: not a failure
            # of the upstream, so not a reason to fail over.
            self._fail(_Retry())
        else:
            message = (_CLOSED_EARLY if not self._head_done else
                       "peer closed connection without sending complete message body")
            self._fail(httpx.RemoteProtocolError(message, request=self._request))
        self._wake()

    def pause_writing(self) -> None:  # bodies are small; the write buffer is not watched
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue and friends: the real answer follows
            self.reason, self.headers = b"", []
            return
        self.status = status
        self._head_done = True
        names = {n.lower() for n, _ in self.headers}
        self._until_close = (b"content-length" not in names and b"transfer-encoding" not in names
                             and status not in (204, 304))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._head_done:
            # Asked here: llhttp answers it only until the next message begins.
            self._keep_alive = self._parser.should_keep_alive()
            self.complete = True

    # -- used by the transport ----------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        """Wait for more of the response. Raises its failure or ReadTimeout."""
        waiter = self._waiter = self._loop.create_future()
        # A timer that fails the waiter, not ``asyncio.timeout``: this runs once per read
        # of every answer, and a timeout context costs ~3 us more (a Timeout object,
        # the current task, a cancellation turned back into TimeoutError).
        timer = (None if timeout is None
                 else self._loop.call_later(timeout, self._timed_out, waiter))
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.close()
            waiter.set_exception(httpx.ReadTimeout("read timeout", request=self._request))

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    async def send(self, request: httpx.Request | None, head: bytes, body: bytes,
                   read: float | None) -> None:
        """Write a request (``head``, its lines up to the blank one, and ``body``) and
        wait for the head of the answer. ``request`` is what httpx errors name (None for
        ``PoolTransport.post``). Raises _Retry, httpx errors, or ReadTimeout."""
        self._request = request
        self._busy = True
        self.status, self.reason, self.headers = 0, b"", []
        self._head_done = self._until_close = self.complete = self._keep_alive = False
        self._got_bytes = False
        self._error = None
        self._buffered = 0
        if self.closed or self.transport is None:
            raise _Retry() if self.reused else httpx.WriteError("connection closed",
                                                               request=request)
        self.transport.write(head + body)
        while not self._head_done:
            self._raise_failure()
            if self.closed and not self._head_done:
                raise httpx.RemoteProtocolError(_CLOSED_EARLY, request=request)
            await self._wait(read)

    async def body(self, read: float | None,
                   end: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
        """The body's chunks as they come; ``end`` is called once the last one is out."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < _HIGH_WATER // 2 and not self.closed:
                    self._paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                yield chunk
            if self.complete:
                if end is not None:
                    end()
                return
            self._raise_failure()
            await self._wait(read)

    async def read_all(self, read: float | None) -> bytes:
        """The whole body (what ``body`` yields, joined), without a generator: a plain
        answer usually arrives with its head, in one chunk."""
        parts: list[bytes] = []
        while True:
            if self._chunks:
                parts.extend(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._paused and not self.closed:
                    self._paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
            if self.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            self._raise_failure()
            await self._wait(read)

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self.closed and not self._chunks

    def done(self) -> None:
        """The response is over (read to its end or abandoned)."""
        self._request = None
        self._busy = False
        if not self.reusable:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
