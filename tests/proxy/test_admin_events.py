"""GET /admin/events: what the TUI board draws, live, without message bodies."""

from __future__ import annotations

import asyncio

import orjson

from lai.engine.events import EventBus, HealthChecked, follow
from tests.harness import model, provider


async def test_events_stream_snapshot_then_request_events(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    seen: list[dict] = []

    async def read() -> None:
        async with proxy.http.stream("GET", "/admin/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    seen.append(orjson.loads(line[6:]))
                    if seen[-1]["kind"] == "request_finished":
                        return

    reader = asyncio.create_task(read())
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "a secret sentence"}]})
    assert r.status_code == 200
    await asyncio.wait_for(reader, timeout=10)
    kinds = [e["kind"] for e in seen]
    assert kinds[0] == "snapshot" and seen[0]["providers"][0]["id"] == "box"
    assert "request_started" in kinds and kinds[-1] == "request_finished"
    finished = seen[-1]
    assert finished["provider_id"] == "box" and finished["status"] == "success"
    assert finished["conversation_id"] == r.headers["X-Conversation-ID"]
    assert "a secret sentence" not in orjson.dumps(seen).decode()  # no message bodies


async def test_a_slow_reader_is_told_what_it_missed():
    bus = EventBus()
    live = follow(bus, lambda: {"kind": "snapshot"}, size=3)
    assert await anext(live) == {"kind": "snapshot"}
    for i in range(10):
        bus.emit(HealthChecked(f"p{i}", "healthy", 0.0, 1.0, None))
    assert await anext(live) == {"kind": "dropped", "count": 7}
    rest = [await anext(live) for _ in range(3)]
    assert [e["provider_id"] for e in rest] == ["p7", "p8", "p9"]
    await live.aclose()
    assert bus._observers == []  # unsubscribed when the reader leaves


async def test_requests_in_flight_show_tokens_so_far(proxy_factory, upstream):
    from tests.fakes.upstream import Behaviour

    upstream.default = Behaviour(chunks=50, delay=0.05)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    assert (await proxy.http.get("/admin/requests")).json()["data"] == []
    async with proxy.http.stream("POST", "/v1/chat/completions", json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}) as r:
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: {")
            if seen == 6:
                break
        (flight,) = (await proxy.http.get("/admin/requests")).json()["data"]
    assert flight["provider_id"] == "box" and flight["model_id"] == "m"
    assert flight["streaming"] is True and flight["completion_tokens"] >= 5
