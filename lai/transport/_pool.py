"""The pool of ``lai.transport``: ``PoolTransport``, and the answers it gives the engine
without httpx's response (``Answer``, ``Streamed``); see the package docstring."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from lai.transport._connection import _CLOSED_EARLY, _READ_SIZE, _Connection, _Origin, _Retry

BODY_COMPLETE = "lai.body_complete"
"""A response extension: a function that answers whether the whole body has arrived, so
that reading the response to its end would not wait for the upstream."""


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


def _headers(client: httpx.AsyncClient, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The client's default headers (Accept, Accept-Encoding, ...) that ``headers`` does
    not set, then ``headers``: what httpx would send, bar ``host`` and ``content-length``."""
    own = {name.lower() for name in headers}
    raw = [(name, value) for name, value in client.headers.raw
           if name.decode("latin-1").lower() not in own]
    raw.extend((name.encode("latin-1"), value.encode()) for name, value in headers.items())
    return raw
