"""The cancellation matrix: a client may leave at any stage of its request, and whatever
ends it, lai lets go of everything it opened for it.

For each stage (queued; sent upstream, before the upstream's headers; after the headers,
during prefill; mid-stream; while a non-streamed body is read; an upstream read timeout)
and for streamed and plain requests, after the case: ``/v1/providers`` shows no request
active or queued, the upstream saw the disconnect (so it stops generating), the provider
is still healthy, and fresh requests, more than the provider's slots, all succeed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fakes.upstream import _STREAM_HEAD, Behaviour, FakeUpstream
from tests.harness import RunningProxy, model, provider

MESSAGES = [{"role": "user", "content": "hi"}]
SLOTS = 2


class RawClient:
    """A client on a bare socket, so the test decides exactly when it hangs up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""

    @classmethod
    async def send(cls, proxy: RunningProxy, *, stream: bool) -> RawClient:
        host, port = proxy.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = orjson.dumps({"model": "m", "messages": MESSAGES, "stream": stream})
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (host.encode(), len(body), body))
        await writer.drain()
        return cls(reader, writer)

    async def read_until(self, marker: bytes) -> None:
        async with asyncio.timeout(5):
            while marker not in self.received:
                chunk = await self.reader.read(65536)
                assert chunk, f"connection closed before {marker!r}: {self.received!r}"
                self.received += chunk

    def leave(self) -> None:
        self.writer.close()


async def eventually(predicate: Callable[[], Awaitable[bool] | bool], what: str,
                     timeout: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if await result if inspect.isawaitable(result) else result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


async def providers(proxy: RunningProxy) -> dict[str, Any]:
    r = await proxy.http.get("/v1/providers")
    assert r.status_code == 200
    return {p["id"]: p for p in r.json()["data"]}


async def assert_recovered(proxy: RunningProxy, upstream: FakeUpstream, *,
                           disconnects: int, fresh: int = 2 * SLOTS + 1) -> None:
    """Nothing is held for the requests that ended; the provider serves on."""

    async def idle() -> bool:
        box = (await providers(proxy))["box"]
        return box["active_requests"] == 0 and box["queue_depth"] == 0

    await eventually(idle, "no request active or queued")
    await upstream.wait_for_async(lambda: upstream.disconnects == disconnects)
    await upstream.wait_for_async(lambda: upstream.in_flight == 0)
    assert (await providers(proxy))["box"]["status"] == "healthy"

    upstream.default = Behaviour(chunks=3)
    client = openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0,
                                http_client=httpx.AsyncClient(trust_env=False))
    async with client:
        async def plain() -> str:
            done = await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            return done.choices[0].message.content or ""

        async def streamed() -> str:
            chunks = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            return "".join([c.choices[0].delta.content or "" async for c in chunks
                            if c.choices])

        answers = await asyncio.gather(*(plain() if i % 2 else streamed()
                                         for i in range(fresh)))
    assert answers == ["tok0 tok1 tok2"] * fresh
    assert (await providers(proxy))["box"]["active_requests"] == 0


@pytest.fixture
async def proxy(proxy_factory, upstream) -> RunningProxy:  # type: ignore[no-untyped-def]
    return await proxy_factory(  # type: ignore[no-any-return]
        [provider("box", upstream.url, max_concurrent=SLOTS)], [model("m", "box")])


async def headers_reached_lai(upstream: FakeUpstream, answers: int = 1) -> None:
    # The fake has written its headers; a moment more and lai has read them.
    await upstream.wait_for_async(lambda: upstream.bytes_sent >= answers * len(_STREAM_HEAD))
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_client_leaves_while_queued(proxy, upstream, stream):
    upstream.default = Behaviour(mode="hang")
    busy = [await RawClient.send(proxy, stream=stream) for _ in range(SLOTS)]
    await upstream.wait_for_async(lambda: upstream.in_flight == SLOTS)
    queued = await RawClient.send(proxy, stream=stream)
    await eventually(lambda: proxy.engine.slots.queue_depth == 1, "queued")
    queued.leave()
    await eventually(lambda: proxy.engine.slots.queue_depth == 0, "place given back")
    for client in busy:
        client.leave()
    await assert_recovered(proxy, upstream, disconnects=SLOTS)
    assert upstream.chat_count == SLOTS + 2 * SLOTS + 1  # the queued one never went up


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_client_leaves_before_the_upstream_answers(proxy, upstream, stream):
    upstream.default = Behaviour(first_delay=30)
    client = await RawClient.send(proxy, stream=stream)
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    client.leave()
    await assert_recovered(proxy, upstream, disconnects=1)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_client_leaves_after_the_upstream_headers(proxy, upstream, stream):
    # Streamed: the upstream sent 200 and its headers and is in prefill (no event yet).
    # Plain: lai is reading the body, of which half has come.
    upstream.default = Behaviour(prefill_delay=30)
    client = await RawClient.send(proxy, stream=stream)
    await headers_reached_lai(upstream)
    client.leave()
    await assert_recovered(proxy, upstream, disconnects=1)


async def test_client_leaves_mid_stream(proxy, upstream):
    upstream.default = Behaviour(chunks=10, stall_after=2)
    client = await RawClient.send(proxy, stream=True)
    await client.read_until(b"tok1")
    client.leave()
    await assert_recovered(proxy, upstream, disconnects=1)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_upstream_read_timeout_closes_the_upstream_request(proxy_factory, upstream,
                                                                 stream):
    proxy = await proxy_factory(
        [provider("box", upstream.url, max_concurrent=SLOTS, read_timeout=0.3)],
        [model("m", "box")])
    upstream.default = Behaviour(prefill_delay=30)
    r = await proxy.http.post("/v1/chat/completions",
                              json={"model": "m", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    await assert_recovered(proxy, upstream, disconnects=1)


async def test_thirty_hang_ups_during_prefill_leave_the_provider_serving(proxy_factory,
                                                                        upstream):
    # Measurement 1 of issue 11, scaled down: clients that give up while the model server
    # is in prefill (after its 200 headers, before the first token). Each one left its
    # pooled connection open and the upstream generating; enough of them exhausted the
    # pool, and then every request timed out and the provider was marked unhealthy.
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=10)],
                                [model("m", "box")])
    upstream.default = Behaviour(prefill_delay=1.0)
    for wave in range(1, 4):
        clients = [await RawClient.send(proxy, stream=True) for _ in range(10)]
        await upstream.wait_for_async(lambda: upstream.in_flight == 10)
        await headers_reached_lai(upstream, answers=10 * wave)
        for client in clients:
            client.leave()
        await upstream.wait_for_async(lambda w=wave: upstream.disconnects == 10 * w)
    await assert_recovered(proxy, upstream, disconnects=30, fresh=20)


async def test_a_client_that_does_not_read_stops_lai_reading_the_upstream(proxy_factory,
                                                                         upstream_factory):
    # An 8 MB answer to a client that reads nothing: lai holds a small bounded buffer
    # for it (docs/routing.md), stops reading the upstream, and keeps the slot counted.
    # The fake's own send buffer is small so that what it wrote is what lai read.
    upstream = upstream_factory(send_buffer=64 * 1024, record=False)
    size = 8_000_000
    upstream.default = Behaviour(content=["x" * 1000] * (size // 1000))
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=SLOTS)],
                                [model("m", "box")])
    client = await RawClient.send(proxy, stream=True)
    await upstream.wait_for_async(lambda: upstream.in_flight == 1, timeout=10)
    sent = -1
    while upstream.bytes_sent != sent:  # until the fake's writes block
        sent = upstream.bytes_sent
        await asyncio.sleep(0.3)
    assert upstream.in_flight == 1
    # What the kernels on both sides hold plus lai's buffers; lai used to read it all.
    assert sent < 2_000_000
    assert (await providers(proxy))["box"]["active_requests"] == 1
    client.leave()
    await assert_recovered(proxy, upstream, disconnects=1)
