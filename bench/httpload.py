"""A small HTTP/1.1 keep-alive client and load generator for the benchmark.

Built on a bare ``asyncio.Protocol`` (on uvloop when installed) so that the client costs
as little as possible: a request is one ``transport.write``, a response is parsed in
``data_received`` and timestamped there, before the waiting coroutine even wakes up.
It speaks only what the benchmark needs: ``Content-Length`` and chunked responses, and
for streams the arrival time of every SSE event.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class Target:
    """Where requests go and what they carry: ``host``, ``port`` and the fixed request
    bytes of a plain chat completion, a streamed one (``stream_model``, whose tokens come
    apart) and a streamed one from ``model`` (whose tokens all come at once)."""

    name: str
    host: str
    port: int
    plain: bytes
    stream: bytes
    burst: bytes

    @classmethod
    def for_url(
        cls,
        name: str,
        base_url: str,
        *,
        model: str,
        stream_model: str,
        key: str | None,
        path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> Target:
        parts = urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v1") and path.startswith("/v1/"):
            prefix = prefix[: -len("/v1")]
        full = prefix + path

        def req(body: dict[str, object]) -> bytes:
            payload = orjson.dumps(body)
            head = [
                f"POST {full} HTTP/1.1",
                f"Host: {host}:{port}",
                "Content-Type: application/json",
                f"Content-Length: {len(payload)}",
                "Accept: */*",
            ]
            if key:
                head.append(f"Authorization: Bearer {key}")
            head += [f"{name}: {value}" for name, value in (headers or {}).items()]
            return ("\r\n".join(head) + "\r\n\r\n").encode() + payload

        messages = [{"role": "user", "content": "Say hello in five words."}]
        plain = req({"model": model, "messages": messages, "max_tokens": 16})
        stream = req({"model": stream_model, "messages": messages, "max_tokens": 64,
                      "stream": True})
        burst = req({"model": model, "messages": messages, "max_tokens": 16, "stream": True})
        return cls(name, host, port, plain, stream, burst)


def uvloop_module() -> Any:
    """uvloop when installed (lai depends on it), else None: the generator then runs on
    asyncio's own loop, which is slower."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


class HTTPError(Exception):
    pass


class _Dechunker:
    """Incremental decoder of a chunked body."""

    __slots__ = ("_buf", "_need", "done")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # -1: waiting for a size line; n >= 0: bytes of data + CRLF left
        self.done = False

    def feed(self, data: bytes | bytearray) -> bytes:
        self._buf += data
        out = bytearray()
        buf = self._buf
        while True:
            if self._need < 0:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                size = int(bytes(buf[:nl]).split(b";", 1)[0], 16)
                del buf[: nl + 2]
                if size == 0:
                    self.done = True  # trailers are not used by anyone we measure
                    buf.clear()
                    break
                self._need = size + 2
            if len(buf) < self._need:
                break
            out += buf[: self._need - 2]
            del buf[: self._need]
            self._need = -1
        return bytes(out)


class _Response:
    __slots__ = ("status", "length", "chunked", "body", "dechunker", "done_at", "events")

    def __init__(self) -> None:
        self.status = 0
        self.length = -1
        self.chunked = False
        self.body = bytearray()
        self.dechunker: _Dechunker | None = None
        self.done_at = 0.0
        self.events: list[tuple[float, bytes]] | None = None


class Connection:
    """A keep-alive connection, one request at a time, opened again when the server
    closes it (Hypercorn does after ``keep_alive_max_requests``, 1000, requests)."""

    def __init__(self, host: str, port: int, wire: _Wire) -> None:
        self.host = host
        self.port = port
        self._wire = wire
        self.reconnects = 0

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(host, port, await _Wire.open(host, port))

    async def send(self, raw: bytes, *, events: bool = False) -> _Response:
        """Send ``raw`` and wait for the whole response. With ``events``, the response
        lists ``(arrival time, data)`` for every SSE ``data:`` line of the body."""
        if self._wire.closed or self._wire.close_after:
            self._wire.close()
            self._wire = await _Wire.open(self.host, self.port)
            self.reconnects += 1
        return await self._wire.send(raw, events=events)

    def close(self) -> None:
        self._wire.close()


class _Wire(asyncio.Protocol):
    """One TCP connection; one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._resp: _Response | None = None
        self._head_done = False
        self._waiter: asyncio.Future[_Response] | None = None
        self._sse = bytearray()
        self.closed = False
        self.close_after = False

    @classmethod
    async def open(cls, host: str, port: int) -> _Wire:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, host, port)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HTTPError(f"connection lost: {exc}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def send(self, raw: bytes, *, events: bool = False) -> _Response:
        if self.closed or self._transport is None:
            raise HTTPError("connection closed")
        loop = asyncio.get_running_loop()
        self._resp = _Response()
        if events:
            self._resp.events = []
            self._sse.clear()
        self._head_done = False
        self._waiter = loop.create_future()
        self._transport.write(raw)
        return await self._waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        resp = self._resp
        if resp is None:
            return
        if not self._head_done:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).lower()
            data = bytes(self._buf[end + 4 :])
            self._buf.clear()
            self._head_done = True
            resp.status = int(head[9:12])
            self.close_after = b"\r\nconnection: close" in head
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                resp.length = int(head[i + 17 : j if j >= 0 else None])
            elif b"\r\ntransfer-encoding: chunked" in head:
                resp.chunked = True
                resp.dechunker = _Dechunker()
            if not data and resp.length != 0:
                return
        if resp.chunked:
            assert resp.dechunker is not None
            piece = resp.dechunker.feed(data)
            resp.body += piece
            if resp.events is not None and piece:
                self._split_events(piece, now, resp.events)
            complete = resp.dechunker.done
        else:
            resp.body += data
            if resp.events is not None:
                self._split_events(data, now, resp.events)
            complete = resp.length >= 0 and len(resp.body) >= resp.length
        if complete:
            resp.done_at = now
            self._resp = None
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(resp)

    def _split_events(self, piece: bytes, now: float, out: list[tuple[float, bytes]]) -> None:
        self._sse += piece
        while True:
            end = self._sse.find(b"\n\n")
            if end < 0:
                return
            event = bytes(self._sse[:end])
            del self._sse[: end + 2]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append((now, line[5:].strip()))


# ---------------------------------------------------------------------- measurements


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


async def timed(conn: Connection, raw: bytes) -> float:
    """Seconds for one plain request on ``conn``. Raises HTTPError unless it is a 200."""
    t0 = time.perf_counter()
    resp = await conn.send(raw)
    if resp.status != 200:
        raise HTTPError(f"HTTP {resp.status}: {bytes(resp.body[:300])!r}")
    return resp.done_at - t0


@dataclass
class StreamTiming:
    ttft: float
    """Seconds from sending to the first event whose delta has content."""
    gaps: list[float]
    """Seconds between consecutive content events."""
    total: float


def _has_content(data: bytes) -> bool:
    if data == b"[DONE]":
        return False
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    for choice in obj.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            return True
    return False


async def timed_stream(conn: Connection, raw: bytes) -> StreamTiming:
    """Time one streamed request. Raises HTTPError unless it is a 200 with content."""
    t0 = time.perf_counter()
    resp = await conn.send(raw, events=True)
    if resp.status != 200:
        raise HTTPError(f"HTTP {resp.status}: {bytes(resp.body[:300])!r}")
    assert resp.events is not None
    stamps = [t for t, data in resp.events if _has_content(data)]
    if not stamps:
        raise HTTPError(f"stream without content: {bytes(resp.body[:300])!r}")
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return StreamTiming(stamps[0] - t0, gaps, resp.done_at - t0)


@dataclass
class LoadResult:
    clients: int
    seconds: float
    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def load(target: Target, clients: int, seconds: float) -> LoadResult:
    """``clients`` connections each sending plain requests back to back for ``seconds``."""
    conns = [await Connection.open(target.host, target.port) for _ in range(clients)]
    result = LoadResult(clients, seconds)
    raw = target.plain
    deadline = 0.0

    async def worker(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                resp = await conn.send(raw)
            except HTTPError as exc:
                result.errors += 1
                result.first_error = result.first_error or str(exc)
                return
            if resp.status == 200:
                result.ok += 1
                result.latencies.append(resp.done_at - t0)
            else:
                result.errors += 1
                result.first_error = result.first_error or (
                    f"HTTP {resp.status}: {bytes(resp.body[:300])!r}")

    start = time.perf_counter()
    deadline = start + seconds
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    # Requests in flight at the deadline finish after it; count the real elapsed time.
    result.seconds = time.perf_counter() - start
    return result
