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
