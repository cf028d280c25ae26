"""Client connections: what the proxy holds for them, and when it lets go."""

from __future__ import annotations

import asyncio

import h11
import httpx
import orjson

from tests.fakes.upstream import Behaviour
from tests.harness import model, provider


def _connection_tasks() -> int:
    # One Hypercorn task per open client connection runs this callback.
    return sum(
        1 for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").endswith("_server_callback")
    )


async def test_a_connection_the_client_closed_is_let_go_at_once(proxy_factory, upstream):
    # Hypercorn alone keeps each one until keep_alive_timeout (75 s): a client that
    # connects once per request would pile up connections and memory.
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    host, port = proxy.url.removeprefix("http://").split(":")
    before = _connection_tasks()
    for _ in range(10):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        await writer.wait_closed()
    for _ in range(200):
        if _connection_tasks() <= before:
            break
        await asyncio.sleep(0.01)
    assert _connection_tasks() <= before


async def test_shutdown_closes_an_idle_keep_alive_connection_at_once(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await proxy.stop()  # graceful_timeout is 5 s: an idle connection must not use it up
    assert loop.time() - started < 2.5
    assert await asyncio.wait_for(reader.read(), 1) is not None  # the server closed it
    writer.close()


async def test_a_request_in_flight_at_shutdown_still_gets_its_answer(proxy_factory,
                                                                     upstream_factory):
    slow = upstream_factory()
    slow.default = Behaviour(first_delay=0.5)
    proxy = await proxy_factory([provider("box", slow.url)], [model("small", "box")])
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        pending = asyncio.create_task(client.post("/v1/chat/completions", json={
            "model": "small", "messages": [{"role": "user", "content": "hi"}]}))
        await slow.wait_for_async(lambda: slow.in_flight == 1, timeout=5)
        stopping = asyncio.create_task(proxy.stop())
        r = await pending
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        await stopping


class _Wire:
    """A raw client connection whose answers h11 parses (as a client), so framing errors
    (a wrong Content-Length, a broken chunk) fail the test instead of hanging it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 http_version: bytes = b"1.1") -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.http_version = http_version

    async def ask(self, method: bytes, target: bytes, body: bytes = b"",
                  headers: tuple[tuple[bytes, bytes], ...] = ()
                  ) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        head = [(b"host", b"lai"), *headers]
        if body or method == b"POST":
            head += [(b"content-type", b"application/json"),
                     (b"content-length", b"%d" % len(body))]
        if self.http_version == b"1.0":  # h11 speaks 1.1: the request line by hand
            lines = b"".join(b"%s: %s\r\n" % h for h in head)
            self.writer.write(b"%s %s HTTP/1.0\r\n%s\r\n%s" % (method, target, lines, body))
            self.h11.send(h11.Request(method=method, target=target, headers=head))
            self.h11.send(h11.Data(data=body)) if body else None
            self.h11.send(h11.EndOfMessage())
        else:
            data = self.h11.send(h11.Request(method=method, target=target, headers=head))
            data += self.h11.send(h11.Data(data=body)) if body else b""
            self.writer.write(data + self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()
        status, got, answer = 0, {}, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await asyncio.wait_for(self.reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                status, got = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                answer += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, got, answer
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 10) == b""


async def _wire(proxy, http_version: bytes = b"1.1") -> _Wire:  # type: ignore[no-untyped-def]
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    return _Wire(reader, writer, http_version)


CHAT = b'{"model": "small", "messages": [{"role": "user", "content": "hi"}]}'
STREAM = b'{"model": "small", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'


async def test_one_kept_alive_connection_serves_every_kind_of_answer(proxy_factory, upstream):
    # Plain and streamed answers (Content-Length, chunked), Quart's answers, a HEAD, an
    # error, the Messages face: one after another on one connection, each well framed
    # and each with its own x-request-id.
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    wire = await _wire(proxy)
    msg = b'{"model": "small", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}'
    ids = set()
    for method, target, body, expect in [
        (b"POST", b"/v1/chat/completions", CHAT, 200),
        (b"POST", b"/v1/chat/completions", STREAM, 200),
        (b"GET", b"/health", b"", 200),
        (b"HEAD", b"/", b"", 200),
        (b"GET", b"/v1/nope", b"", 404),
        (b"POST", b"/v1/chat/completions", b"{", 400),
        (b"POST", b"/v1/messages", msg, 200),
        (b"POST", b"/v1/chat/completions", CHAT, 200),
    ]:
        status, headers, answer = await wire.ask(method, target, body)
        assert status == expect, (target, answer)
        ids.add(headers[b"x-request-id"])
        if body is STREAM:
            assert headers[b"transfer-encoding"] == b"chunked"
            assert answer.rstrip().endswith(b"data: [DONE]")
        elif method != b"HEAD":
            assert int(headers[b"content-length"]) == len(answer)
            assert orjson.loads(answer)
    assert len(ids) == 8
    assert not wire.reader.at_eof()
    wire.writer.close()


async def test_clients_that_end_the_connection_get_their_answer_then_the_close(
    proxy_factory, upstream
):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    for version, headers, body in [(b"1.0", (), CHAT), (b"1.0", (), STREAM),
                                   (b"1.1", ((b"connection", b"close"),), CHAT),
                                   (b"1.1", ((b"connection", b"close"),), STREAM)]:
        wire = await _wire(proxy, version)
        status, got, answer = await wire.ask(b"POST", b"/v1/chat/completions", body, headers)
        assert status == 200 and got[b"x-request-id"].startswith(b"req_")
        assert got.get(b"connection") == b"close"
        if body is STREAM:
            assert answer.rstrip().endswith(b"data: [DONE]")
            # An HTTP/1.0 client reads the stream to the close: no chunks for it.
            assert (b"transfer-encoding" in got) == (version == b"1.1")
        else:
            assert orjson.loads(answer)["choices"]
        assert await wire.closed_by_server()
        wire.writer.close()


async def test_a_body_that_comes_in_pieces_is_read_whole_on_every_face(proxy_factory, upstream):
    # Most bodies come with their head; these come later, a piece at a time, so each
    # endpoint waits for them (under its body timeout) instead of finding them there.
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    host, port = proxy.url.removeprefix("http://").split(":")
    msg = b'{"model": "small", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}'
    resp = b'{"model": "small", "input": "hi"}'
    for target, body, key in [(b"/v1/chat/completions", CHAT, "choices"),
                              (b"/v1/messages", msg, "content"),
                              (b"/v1/responses", resp, "output")]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST %s HTTP/1.1\r\nHost: lai\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (target, len(body)))
        for i in range(0, len(body), 20):
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(body[i:i + 20])
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, answer = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), raw
        assert key in orjson.loads(answer), answer
