"""Slots and the priority queue, driven through the engine against a real fake upstream."""

from __future__ import annotations

import asyncio

import pytest

from lai.engine.events import RequestFinished
from lai.engine.types import RequestContext
from lai.errors import CapacityExceeded
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_twenty_parallel_requests_never_exceed_max_concurrent(engine_factory, upstream):
    upstream.default = Behaviour(delay=0.02)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=2)],
                            [model("m", "box")])
    results = await asyncio.gather(
        *(engine.complete(BODY, RequestContext()) for _ in range(20)))
    assert len(results) == 20
    assert upstream.chat_count == 20
    assert upstream.max_in_flight == 2
    assert engine.slots.in_flight["box"] == 0


async def test_streams_count_against_the_same_limit(engine_factory, upstream):
    upstream.default = Behaviour(delay=0.01, chunks=4)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=3)],
                            [model("m", "box")])

    async def one() -> int:
        stream = await engine.stream({**BODY, "stream": True}, RequestContext())
        n = 0
        try:
            async for _ in stream:
                n += 1
        finally:
            await stream.aclose()
        return n

    counts = await asyncio.gather(*(one() for _ in range(12)))
    assert all(c >= 5 for c in counts)
    assert upstream.max_in_flight == 3


async def test_priority_zero_is_served_before_earlier_priority_one(engine_factory, upstream):
    upstream.default = Behaviour(delay=0.15)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")])
    order: list[str] = []

    async def ask(tag: str, priority: int) -> None:
        body = {**BODY, "messages": [{"role": "user", "content": tag}]}
        await engine.complete(body, RequestContext(priority=priority))
        order.append(tag)

    first = asyncio.create_task(ask("first", 1))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    waiting = [asyncio.create_task(ask(f"p1-{i}", 1)) for i in range(3)]
    await asyncio.sleep(0.02)
    assert engine.slots.queue_depth == 3
    agent = asyncio.create_task(ask("agent", 0))
    await asyncio.gather(first, *waiting, agent)
    served = [r.body["messages"][0]["content"] for r in upstream.requests]
    assert served == ["first", "agent", "p1-0", "p1-1", "p1-2"]
    assert order[1] == "agent"


async def test_queue_timeout_gives_capacity_exceeded_with_retry_after(engine_factory, upstream):
    upstream.default = Behaviour(delay=1.0)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")], queue_timeout=0.2)
    busy = asyncio.create_task(engine.complete(BODY, RequestContext()))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    with pytest.raises(CapacityExceeded) as info:
        await engine.complete(BODY, RequestContext())
    assert info.value.status == 503
    assert info.value.code == "provider_capacity_exceeded"
    assert int(info.value.headers()["Retry-After"]) >= 1
    await busy
    assert engine.slots.queue_depth == 0


async def test_full_queue_refuses_at_once(engine_factory, upstream):
    upstream.default = Behaviour(delay=0.5)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")], queue_max_size=2, queue_timeout=10)
    tasks = [asyncio.create_task(engine.complete(BODY, RequestContext())) for _ in range(3)]
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    await asyncio.sleep(0.01)
    assert engine.slots.queue_depth == 2
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(CapacityExceeded, match="queue is full"):
        await engine.complete(BODY, RequestContext())
    assert loop.time() - t0 < 0.4  # refused, not queued until a timeout
    await asyncio.gather(*tasks)


async def test_cancelled_waiter_leaves_the_queue_and_takes_no_slot(engine_factory, upstream):
    upstream.default = Behaviour(delay=0.3)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")])
    finished: list[RequestFinished] = []
    engine.events.subscribe(lambda e: finished.append(e) if e.kind == "request_finished" else None)
    busy = asyncio.create_task(engine.complete(BODY, RequestContext()))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    waiter = asyncio.create_task(engine.complete(BODY, RequestContext()))
    await asyncio.sleep(0.02)
    assert engine.slots.queue_depth == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert engine.slots.queue_depth == 0
    await busy
    assert engine.slots.in_flight["box"] == 0
    assert upstream.chat_count == 1
    assert [e.status for e in finished] == ["error", "success"]
    assert finished[0].error_code == "client_disconnected"


async def test_busy_primary_spills_to_the_next_provider(engine_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.default = Behaviour(delay=0.3)
    engine = engine_factory(
        [provider("a", a.url, max_concurrent=1, priority=1),
         provider("b", b.url, max_concurrent=1, priority=2)],
        [model("ma", "a"), model("mb", "b")])
    body = {**BODY, "model": "auto"}
    first = asyncio.create_task(engine.complete(body, RequestContext()))
    await a.wait_for_async(lambda: a.in_flight == 1)
    second = await engine.complete(body, RequestContext())
    assert second.provider_id == "b"
    assert (await first).provider_id == "a"
