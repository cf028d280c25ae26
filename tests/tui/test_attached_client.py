"""The attached client reads a running proxy over its admin socket."""

from __future__ import annotations

import asyncio
from typing import Any

from lai.tui.attached import AttachedClient
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider


async def test_in_flight_requests_carry_tokens_so_far(proxy_factory: Any, upstream: Any) -> None:
    upstream.default = Behaviour(chunks=60, delay=0.05)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")],
                                admin_socket=True)
    client = AttachedClient(proxy.settings, proxy.runtime.store, sock=proxy.socket_path)
    try:
        assert await client.in_flight() == []
        chat = asyncio.create_task(proxy.http.post("/v1/chat/completions", json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}))
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        await asyncio.sleep(0.5)
        (flight,) = await client.in_flight()
        assert flight.provider_id == "box" and flight.streaming
        assert flight.completion_tokens >= 3  # the board's "tokens so far", attached too
        await chat
    finally:
        await client.close()


async def test_queued_requests_carry_their_estimated_start(proxy_factory: Any,
                                                           upstream: Any) -> None:
    upstream.default = Behaviour(delay=1.0)
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")], admin_socket=True)
    client = AttachedClient(proxy.settings, proxy.runtime.store, sock=proxy.socket_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "go"}]}
    try:
        first = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=body))
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        second = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=body))
        queued: list[Any] = []
        for _ in range(200):
            if queued := await client.queued():
                break
            await asyncio.sleep(0.005)
        (waiting,) = queued
        # What the board shows as "starts in": the proxy's figure, read over the socket.
        (listed,) = (await proxy.http.get("/admin/queue")).json()["data"]
        assert waiting.estimated_start_ms is not None and waiting.estimated_start_ms > 0
        assert waiting.estimated_start_ms == listed["estimated_start_ms"]
        await asyncio.gather(first, second)
    finally:
        await client.close()
