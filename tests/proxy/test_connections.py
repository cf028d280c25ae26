"""Client connections: what the proxy holds for them, and when it lets go."""

from __future__ import annotations

import asyncio

import httpx

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
