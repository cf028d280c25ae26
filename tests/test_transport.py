"""The upstream transport (lai/transport) against real servers on 127.0.0.1: framing,
keep-alive, the pool's limits, timeouts and the httpx errors the engine relies on."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from lai.transport import PoolTransport, Streamed, open_stream
from lai.transport import post as lean_post
from tests.tools import OPENSSL, require_tool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server whose every connection runs ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        raw = RawServer(handler)
        raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        servers.append(raw)
        return raw

    yield start
    for raw in servers:
        assert raw.server is not None
        raw.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def client(max_connections: int = 10) -> httpx.AsyncClient:
    transport = PoolTransport(limits=httpx.Limits(max_connections=max_connections))
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0), trust_env=False)


async def test_keep_alive_reuses_one_connection(serve) -> None:
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(ok(b'{"a":1}'))

    raw = await serve(handler)
    async with client() as http:
        for _ in range(5):
            r = await http.post(raw.url + "/v1/chat/completions", content=b"{}")
            assert r.status_code == 200 and r.json() == {"a": 1}
    assert raw.connections == 1


async def test_chunked_in_pieces_until_close_and_informational_responses(serve) -> None:
    async def chunked(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # still usable afterwards
        writer.write(ok(b"again"))

    async def until_close(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    a, b = await serve(chunked), await serve(until_close)
    async with client() as http:
        r = await http.get(a.url)
        assert r.text == "hello world"
        assert (await http.get(a.url)).text == "again"
        assert (await http.get(b.url)).text == "all of it"
    assert a.connections == 1


async def test_a_kept_alive_connection_the_server_closed_is_replaced(serve) -> None:
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.05)  # then closes: an idle timeout on the server

    raw = await serve(handler)
    async with client() as http:
        assert (await http.get(raw.url)).text == "hello"
        await asyncio.sleep(0.2)
        assert (await http.get(raw.url)).text == "hello"
    assert raw.connections == 2


async def test_failures_are_the_httpx_errors_the_engine_maps(serve) -> None:
    async def reset(reader, writer):
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async def cut(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
        await writer.drain()

    async def silent(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"this is not http\r\n\r\n")
        await writer.drain()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    async with client() as http:
        with pytest.raises(httpx.ConnectError) as info:
            await http.get(refused)
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await http.get((await serve(reset)).url)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get((await serve(cut)).url)
        with pytest.raises(httpx.ReadTimeout):
            await http.get((await serve(silent)).url, timeout=httpx.Timeout(5.0, read=0.1))
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get((await serve(garbage)).url)


async def test_an_answer_followed_by_stray_bytes_is_returned_and_not_reused(serve) -> None:
    # One read holds a whole answer and bytes that are no answer: the answer is the
    # request's (at once, not a read timeout later), the connection is not kept.
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(ok() + b"not http\r\n\r\n")
            await writer.drain()

    raw = await serve(handler)
    async with client() as http:
        assert (await http.get(raw.url)).text == "hello"
        answer = await lean_post(http, httpx.URL(raw.url), b"{}", {}, httpx.Timeout(5.0))
        assert answer.content == b"hello"
    assert raw.connections == 2


async def test_the_engine_calls_send_what_httpx_sends_and_read_what_it_reads(serve) -> None:
    # lai.transport.post and open_stream skip httpx's client and make each request's
    # head once per URL and header set: the request must stay httpx's (the same lines in
    # the same order, names but for their case, and the body), also after the headers
    # or the client's own defaults change.
    seen: list[bytes] = []

    def same_as_httpx() -> bool:
        def lines(raw: bytes) -> list[bytes]:
            head, _, body = raw.partition(b"\r\n\r\n")
            first, *fields = head.split(b"\r\n")
            return [first, *(f.split(b":", 1)[0].lower() + f[f.index(b":"):] for f in fields),
                    body]
        return lines(seen[-1]) == lines(seen[-2])

    async def handler(reader, writer):
        while True:
            seen.append(await read_request(reader))
            if b"text/event-stream" in seen[-1]:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                             b"7\r\ndata: 1\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
            else:
                writer.write(ok(b'{"a":1}'))

    raw = await serve(handler)
    url = httpx.URL(raw.url + "/v1/chat/completions")
    timeout = httpx.Timeout(5.0)
    plain = {"content-type": "application/json"}
    streamed = {**plain, "accept": "text/event-stream"}
    async with client() as http:
        for headers in (plain, {**plain, "authorization": "Bearer sk-1"}, plain):
            await http.post(url, content=b'{"x":1}', headers=headers)
            answer = await lean_post(http, url, b'{"x":1}', headers, timeout)
            assert answer.status_code == 200 and answer.content == b'{"a":1}'
            assert same_as_httpx()
        http.headers["user-agent"] = "someone-else"
        await http.post(url, content=b"{}", headers=plain)
        await lean_post(http, url, b"{}", plain, timeout)
        assert same_as_httpx() and b"someone-else" in seen[-1]
        for _ in range(2):
            request = http.build_request("POST", url, content=b"{}", headers=streamed)
            resp = await http.send(request, stream=True)
            assert [c async for c in resp.aiter_bytes()] == [b"data: 1", b"data: 2"]
            await resp.aclose()
            lean = await open_stream(http, url, b"{}", streamed, timeout)
            assert isinstance(lean, Streamed) and lean.status_code == 200
            assert [c async for c in lean.aiter_bytes()] == [b"data: 1", b"data: 2"]
            await lean.aclose()
            assert same_as_httpx()
    assert len(seen) == 12 and raw.connections == 1  # every answer read whole, kept alive


async def test_a_read_timeout_on_the_engine_calls_closes_the_connection(serve) -> None:
    async def silent(reader, writer):
        await read_request(reader)
        await reader.read()  # until lai hangs up

    async def stalls(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nonce\r\n")
        await writer.drain()
        await reader.read()

    short = httpx.Timeout(5.0, read=0.1)
    async with client() as http:
        a, b = await serve(silent), await serve(stalls)
        with pytest.raises(httpx.ReadTimeout):
            await lean_post(http, httpx.URL(a.url), b"{}", {}, short)
        resp = await open_stream(http, httpx.URL(b.url), b"{}", {}, short)
        chunks = resp.aiter_bytes()
        assert await chunks.__anext__() == b"once"
        with pytest.raises(httpx.ReadTimeout):
            await chunks.__anext__()
        await resp.aclose()
        # Both connections were closed, not kept: the next requests open new ones.
        with pytest.raises(httpx.ReadTimeout):
            await lean_post(http, httpx.URL(a.url), b"{}", {}, short)
    assert a.connections == 2 and b.connections == 1


async def test_bytes_an_upstream_sends_on_an_idle_connection_reach_no_request(serve) -> None:
    # An answer nobody asked for, sent while the connection waits in the pool: the next
    # request goes on a new connection and gets its own answer, not that one.
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(ok(b"stale"))
        await writer.drain()
        while True:
            await read_request(reader)
            writer.write(ok(b"wrong"))
            await writer.drain()

    async def fresh(reader, writer):
        while True:
            await read_request(reader)
            writer.write(ok(b"fresh"))
            await writer.drain()

    raw = await serve(handler)
    async with client() as http:
        assert (await http.get(raw.url)).text == "first"
        await asyncio.sleep(0.3)  # the stray answer is in, the connection idle
        raw.handler = fresh
        assert (await http.get(raw.url)).text == "fresh"
    assert raw.connections == 2


async def test_closing_a_stream_early_closes_its_connection(serve) -> None:
    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b"5\r\ntoken\r\n"[:0] + b"5\r\ntokn \r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
            await reader.read()
        finally:
            closed.set()

    raw = await serve(handler)
    async with client() as http, http.stream("GET", raw.url) as r:
        async for chunk in r.aiter_bytes():
            assert chunk
            break
    await asyncio.wait_for(closed.wait(), 2)  # the server saw the client go


async def test_a_stream_the_engine_closes_early_closes_its_connection(serve) -> None:
    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b"5\r\ntokn \r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
            await reader.read()
        finally:
            closed.set()

    raw = await serve(handler)
    async with client() as http:
        resp = await open_stream(http, httpx.URL(raw.url), b"{}", {}, httpx.Timeout(5.0))
        assert isinstance(resp, Streamed)
        assert await resp.aiter_bytes().__anext__() == b"tokn "
        await resp.aclose()
        await asyncio.wait_for(closed.wait(), 2)  # the server saw lai go


async def test_an_encoded_stream_is_decoded_by_httpx_on_the_engine_path(serve) -> None:
    import gzip

    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(ok(gzip.compress(b"data: 1\n\n"), b"content-encoding: gzip\r\n"))

    raw = await serve(handler)
    async with client() as http:
        resp = await open_stream(http, httpx.URL(raw.url), b"{}", {}, httpx.Timeout(5.0))
        assert isinstance(resp, httpx.Response)
        assert b"".join([c async for c in resp.aiter_bytes()]) == b"data: 1\n\n"
        await resp.aclose()


async def test_the_pool_limit_queues_and_times_out(serve) -> None:
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            await asyncio.sleep(0.2)
            writer.write(ok())

    raw = await serve(handler)
    async with client(max_connections=1) as http:
        first = asyncio.create_task(http.get(raw.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(raw.url, timeout=httpx.Timeout(5.0, pool=0.05))
        second = await http.get(raw.url)  # waits for the first, then reuses its connection
        assert (await first).text == second.text == "hello"
    assert raw.connections == 1


async def test_cookies_an_upstream_sets_are_not_sent_on_later_requests(serve) -> None:
    # One client carries every user's requests: nothing may ride from one to the next.
    from lai.config.models import Settings
    from lai.runtime import make_http_client

    seen: list[bytes] = []

    async def handler(reader, writer):
        while True:
            seen.append(await read_request(reader))
            writer.write(ok(extra=b"set-cookie: session=user-a; Path=/\r\n"))

    raw = await serve(handler)
    async with make_http_client(Settings.model_validate({})) as http:
        await http.get(raw.url)
        await http.get(raw.url)
    assert len(seen) == 2 and b"cookie" not in seen[1].lower()


@pytest.fixture
def tls_files(tmp_path):  # type: ignore[no-untyped-def]
    """A self-signed certificate for localhost (openssl). Without openssl the test is
    skipped on a developer's machine and fails under CI, whose .ci/run installs it."""
    openssl = require_tool(*OPENSSL)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_with_keep_alive(tls_files) -> None:
    # Cloud providers are https: TLS goes through the same pool.
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        try:
            while True:
                await read_request(reader)
                writer.write(ok(b"secret"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusted = ssl.create_default_context(cafile=str(cert))
    transport = PoolTransport(limits=httpx.Limits(max_connections=4), verify=trusted)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        for _ in range(3):
            assert (await http.get(f"https://localhost:{port}/models")).text == "secret"
    async with httpx.AsyncClient(transport=PoolTransport(limits=httpx.Limits()),
                                 trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):  # not trusted by the default context
            await http.get(f"https://localhost:{port}/models")
    server.close()
    assert connections == 1  # three requests, one TLS connection
