"""Client connections: what the proxy holds for them, and when it lets go."""

from __future__ import annotations

import asyncio

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
