"""The upstream transport: httpx's interface over a small HTTP/1.1 connection pool.

The engine and the health checks speak ``httpx.AsyncClient`` (timeouts, streams, the
httpx exceptions they map to lai errors); this is the transport behind that client.
Measured with ``bench/run.py`` and its stage runs (bench/README.md), the client side of
a request was the largest part of what lai added: httpx's own pool (httpcore) collapsed
under concurrency (~100 req/s at 32 clients), aiohttp under httpx cost ~340 us per
request. This transport writes a request with one ``write`` and parses the response with
httptools (llhttp, the parser of Node.js and uvicorn) as it is read.

What it does: keep-alive connections per origin (``http`` and ``https``, TLS through
the SSL context), at most ``max_connections`` in all, idle ones kept up to
``max_keepalive_connections`` for ``keepalive_expiry`` seconds; bodies framed by
Content-Length, chunked encoding or the end of the connection; streamed response
bodies with back-pressure; the connect, pool and read timeouts of the request. A
response closed before its end closes its connection, which is how an upstream learns
that a request was cancelled. A request that fails on a reused connection before any
byte of an answer, closed cleanly (the server had just closed it as idle), is sent once
more on a new connection; a reset is a failure like any other.
No proxies, no HTTP/2: lai talks to model servers and APIs directly.

The engine's own chat calls skip httpx's client layers when the client is a plain one
over this transport (``post`` and ``open_stream`` below): the same bytes go upstream,
the same errors come back, ~65 us less CPU a request (bench/README.md, round two). A 200
whose body is not encoded also skips httpx's response: ``Answer`` (read whole) and
``Streamed`` (read as it comes); anything else is an ``httpx.Response`` as before.

Failures are the httpx exceptions httpcore raises for the same events, so ``lai.engine``
keeps one vocabulary: ``ConnectError`` (the ``OSError`` as its cause), ``ConnectTimeout``,
``PoolTimeout``, ``ReadTimeout``, ``RemoteProtocolError`` (closed early, malformed),
``ReadError`` (reset) and ``WriteError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

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

BODY_COMPLETE = "lai.body_complete"
"""A response extension: a function that answers whether the whole body has arrived, so
that reading the response to its end would not wait for the upstream."""


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing, for the client in front of this transport.

    The one client serves every user's requests, so a cookie an upstream set on one
    answer would ride along on everyone's later requests. Keeping none also skips
    httpx's cookie parsing of every response (~6% of the proxy's time at 1 client).
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


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


class _Body(httpx.AsyncByteStream):
    def __init__(self, pool: PoolTransport, conn: _Connection, read: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._read = read
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.body(self._read):
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._conn)


class Answer:
    """A whole answer read by ``PoolTransport.post``: status, head and raw body."""

    __slots__ = ("content", "headers", "reason", "status_code")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 content: bytes) -> None:
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def encoded(self) -> bool:
        """True when the body has a Content-Encoding other than identity (gzip, ...)."""
        return _encoded(self.headers)


def _encoded(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-encoding" and value.strip().lower() != b"identity":
            return True
    return False


class Streamed:
    """A 200 answer whose body is not encoded, read as it comes (``open_stream``): the
    part of ``httpx.Response`` the engine's streams use, without its layers (a response
    object, a decoder, and three async generators between each chunk and its reader).
    As with the response, the connection is let go of once the body has been read to
    its end, or by ``aclose`` (which closes it when the body was not read to its end)."""

    __slots__ = ("_conn", "_pool", "_read", "_released", "extensions", "headers", "reason",
                 "status_code")

    def __init__(self, pool: PoolTransport, conn: _Connection, read: float | None) -> None:
        self.status_code = conn.status
        self.reason = conn.reason
        self.headers = conn.headers
        self.extensions = {BODY_COMPLETE: self._complete}
        self._pool = pool
        self._conn = conn
        self._read = read
        self._released = False

    def _complete(self) -> bool:
        return self._conn.complete

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's chunks (call once)."""
        return self._conn.body(self._read, self._release)

    async def aread(self) -> bytes:
        """The rest of the body, whole."""
        try:
            return await self._conn.read_all(self._read)
        finally:
            self._release()

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._conn)


class _Head:
    """A request head made by ``PoolTransport._head``, with what it was made from."""

    __slots__ = ("defaults", "head", "origin", "url")

    def __init__(self, url: httpx.URL, defaults: list[Any], origin: _Origin,
                 head: bytes) -> None:
        self.url = url
        self.defaults = defaults
        self.origin = origin
        self.head = head


_HEADS = 256
"""Request heads kept (``PoolTransport._head``): one per provider URL and header set in
use; past this many (URLs made per request by some caller) the cache starts over."""


class PoolTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` with its own HTTP/1.1 keep-alive pool (see the
    module docstring). ``aclose`` closes every connection."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | None = None) -> None:
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._ssl = verify
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open = 0
        """Connections open or being opened, in use or idle."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        """Requests waiting for room in the pool."""
        self._read_buffer = bytearray(_READ_SIZE)
        self._closed = False
        self._heads: dict[tuple[Any, ...], _Head] = {}

    # -- the pool -----------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(trust_env=False)
        return self._ssl

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = idle[-1]._loop.time()  # the running loop's (asyncio's lookup costs a getpid)
        while idle:
            conn = idle.pop()
            if conn.closed or (self._expiry is not None and now - conn.idle_since > self._expiry):
                conn.close()
                self._free_slot()
                continue
            conn.reused = True
            return conn
        return None

    def _close_oldest_idle(self) -> bool:
        oldest: _Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        oldest.close()
        self._free_slot()
        return True

    async def _acquire(self, origin: _Origin, timeouts: dict[str, Any],
                       request: httpx.Request | None) -> _Connection:
        """An idle connection to ``origin``, else a new one once the pool has room.
        Raises PoolTimeout, ConnectTimeout or ConnectError."""
        loop = asyncio.get_running_loop()
        deadline = None if timeouts.get("pool") is None else loop.time() + timeouts["pool"]
        while True:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
            if self._max is None or self._open < self._max or self._close_oldest_idle():
                return await self._connect(origin, timeouts, request)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            looking = False
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
                looking = True
            except TimeoutError:
                raise httpx.PoolTimeout("no free connection in time", request=request) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not looking and waiter.done() and not waiter.cancelled():
                    # Woken, then cancelled or timed out before looking: the connection
                    # freed for us would wait idle while the next waiter times out.
                    self._notify()

    def _notify(self) -> None:
        # A connection went idle or away: the first waiter looks again.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _free_slot(self) -> None:
        self._open -= 1
        self._notify()

    async def _connect(self, origin: _Origin, timeouts: dict[str, Any],
                       request: httpx.Request | None) -> _Connection:
        self._open += 1
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                if scheme == b"https":
                    _, conn = await loop.create_connection(
                        lambda: _Connection(origin, self._read_buffer), host, port,
                        ssl=self._ssl_context(),
                        server_hostname=host)
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(origin, self._read_buffer), host, port)
        except TimeoutError:
            self._free_slot()
            raise httpx.ConnectTimeout("connect timeout", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            self._free_slot()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            self._free_slot()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        conn.done()
        if conn.closed or self._closed:
            conn.close()
            self._free_slot()
            return
        conn.idle_since = conn._loop.time()
        idle = self._idle.setdefault(conn.origin, [])
        idle.append(conn)
        if self._max_idle is not None and sum(map(len, self._idle.values())) > self._max_idle:
            self._close_oldest_idle()
        self._notify()

    async def _exchange(self, origin: _Origin, timeouts: dict[str, Any],
                        request: httpx.Request | None, head: bytes,
                        body: bytes) -> _Connection:
        """Send a request on a pooled connection (once more on a new one, see the module
        docstring); returns the connection once the answer's head is in. Whatever fails
        or cancels this closes the connection and frees its place in the pool."""
        for _attempt in (1, 2):
            # An idle connection is taken here; a coroutine only to wait or connect.
            conn = self._take_idle(origin) or await self._acquire(origin, timeouts, request)
            try:
                await conn.send(request, head, body, timeouts.get("read"))
            except _Retry:
                conn.close()
                self._free_slot()
                continue
            except BaseException:
                conn.close()
                self._free_slot()
                raise
            return conn
        raise httpx.RemoteProtocolError(_CLOSED_EARLY, request=request)

    def _head(self, client: httpx.AsyncClient, url: httpx.URL,
              headers: dict[str, str]) -> _Head:
        """The head of a POST to ``url`` with ``headers`` (``_headers``), up to its
        ``content-length``: made once per URL and headers, not per request (~3 us: the
        URL's parts, the client's default headers merged in, the lines joined)."""
        defaults = client.headers._list  # httpx 0.28: (name, lower-case name, value)
        key = (id(url), *headers.items())
        found = self._heads.get(key)
        if found is not None and found.url is url and found.defaults == defaults:
            return found
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        lines = [b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (url.raw_path, url.netloc)]
        for name, value in _headers(client, headers):
            lines.append(b"%s: %s\r\n" % (name, value))
        made = _Head(url, list(defaults), (scheme, url.host, port), b"".join(lines))
        if len(self._heads) >= _HEADS:
            self._heads.clear()
        # The entry holds ``url``, so no other object can take its id while it is kept.
        self._heads[key] = made
        return made

    async def _start(self, client: httpx.AsyncClient, url: httpx.URL,
                     headers: dict[str, str], body: bytes,
                     timeouts: dict[str, Any]) -> _Connection:
        """POST ``body`` on a pooled connection; returns it once the answer's head is in.
        ``headers`` go after ``host`` and the client's defaults, before ``content-length``
        (``_headers``)."""
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        head = self._head(client, url, headers)
        return await self._exchange(head.origin, timeouts, None,
                                    head.head + b"content-length: %d\r\n\r\n" % len(body),
                                    body)

    async def open(self, client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str],
                   body: bytes, timeouts: dict[str, Any]) -> httpx.Response | Streamed:
        """POST ``body``; returns the streamed response once its head is in, as
        ``client.send(request, stream=True)`` does over this transport but without
        httpx's request and client layers: a 200 whose body is not encoded as a
        ``Streamed``, anything else as an ``httpx.Response``. The caller owns the
        response: closing it lets go of the connection (closed unless read to its end)."""
        conn = await self._start(client, url, headers, body, timeouts)
        read = timeouts.get("read")
        if conn.status == 200 and not _encoded(conn.headers):
            return Streamed(self, conn, read)
        return httpx.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, read),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason,
                        BODY_COMPLETE: lambda: conn.complete},
        )

    async def post(self, client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str],
                   body: bytes, timeouts: dict[str, Any]) -> Answer:
        """POST ``body`` and read the whole answer: what ``AsyncClient.post`` does over
        this transport, without httpx's request, client and response layers (~65 us of
        CPU a request, bench/README.md). ``headers`` go after ``host`` and the client's
        defaults, before ``content-length`` (``_headers`` below). Raises the httpx
        errors of ``handle_async_request``; any way out (cancellation included) lets go
        of the connection, closing it unless the answer was read to its end."""
        conn = await self._start(client, url, headers, body, timeouts)
        try:
            content = await conn.read_all(timeouts.get("read"))
        finally:
            self._release(conn)
        return Answer(conn.status, conn.reason, conn.headers, content)

    # -- httpx ----------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}",
                                            request=request)
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        read = timeouts.get("read")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        for name, value in request.headers.raw:
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        conn = await self._exchange(origin, timeouts, request, b"".join(lines), body)
        if request.method == "HEAD":  # no body follows, whatever the headers say
            conn.complete = True
            conn.close()
        return httpx.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, read),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason,
                        BODY_COMPLETE: lambda: conn.complete},
        )

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._open = 0
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


async def post(client: httpx.AsyncClient, url: httpx.URL, content: bytes,
               headers: dict[str, str], timeout: httpx.Timeout) -> httpx.Response | Answer:
    """``client.post(url, content=..., headers=..., timeout=...)``, read whole: through
    ``PoolTransport.post`` when ``client`` is a plain client over this transport (no
    mounts, hooks or auth), else through ``client``. The same bytes go upstream either
    way (the client's default headers included). A 200 whose body is not encoded comes
    back as an ``Answer``; anything else (errors, a gzip body, which httpx decodes) as
    an ``httpx.Response``. Raises the httpx errors ``client.post`` raises."""
    transport = _lean(client)
    if transport is None:
        return await client.post(url, content=content, headers=headers, timeout=timeout)
    answer = await transport.post(client, url, headers, content, timeout.as_dict())
    if answer.status_code == 200 and not answer.encoded:
        return answer
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content,
                          request=httpx.Request("POST", url),
                          extensions={"http_version": b"HTTP/1.1",
                                      "reason_phrase": answer.reason})


async def open_stream(client: httpx.AsyncClient, url: httpx.URL, content: bytes,
                      headers: dict[str, str],
                      timeout: httpx.Timeout) -> httpx.Response | Streamed:
    """``client.send(client.build_request("POST", ...), stream=True)``, through
    ``PoolTransport.open`` when ``client`` is a plain client over this transport (see
    ``post``): a 200 whose body is not encoded comes back as a ``Streamed``, anything
    else as an ``httpx.Response``. The caller owns the response and must close it."""
    transport = _lean(client)
    if transport is None:
        request = client.build_request("POST", url, content=content, headers=headers,
                                       timeout=timeout)
        return await client.send(request, stream=True)
    return await transport.open(client, url, headers, content, timeout.as_dict())


def _lean(client: httpx.AsyncClient) -> PoolTransport | None:
    """The client's PoolTransport when nothing of the client's own would change a
    request (no mounts, hooks or auth), else None."""
    transport = client._transport
    if (not isinstance(transport, PoolTransport) or client._mounts or client._auth is not None
            or client._event_hooks["request"] or client._event_hooks["response"]):
        return None
    return transport


def _headers(client: httpx.AsyncClient, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The client's default headers (Accept, Accept-Encoding, ...) that ``headers`` does
    not set, then ``headers``: what httpx would send, bar ``host`` and ``content-length``."""
    own = {name.lower() for name in headers}
    raw = [(name, value) for name, value in client.headers.raw
           if name.decode("latin-1").lower() not in own]
    raw.extend((name.encode("latin-1"), value.encode()) for name, value in headers.items())
    return raw
