"""The fair queue in SlotManager: keys take turns within a priority, FIFO within a key,
per-key and per-model caps; and, through the engine, a batch key against a person."""

from __future__ import annotations

import asyncio

import pytest

from lai.engine.quota import KeyQuota
from lai.engine.slots import SlotManager
from lai.engine.types import RequestContext
from lai.errors import CapacityExceeded, KeyQueueFull
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider


async def _queue(slots: SlotManager, key: str | None, tag: str, served: list[str],
                 priority: int = 1, **kw: object) -> asyncio.Task[str]:
    async def one() -> str:
        pid = await slots.acquire(["box"], priority=priority, timeout=5, key=key,
                                  **kw)  # type: ignore[arg-type]
        served.append(tag)
        return pid

    task = asyncio.create_task(one())
    await asyncio.sleep(0)  # it takes its place now, in this order
    return task


async def _settle() -> None:
    """Let woken waiters run (asyncio.wait takes a few loop turns to return)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_single_request_waits_behind_at_most_one_of_a_batch() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100)
    assert slots.try_acquire(["box"], key="batch") == "box"
    served: list[str] = []
    tasks = [await _queue(slots, "batch", f"b{i}", served) for i in range(20)]
    tasks.append(await _queue(slots, "alice", "alice", served))
    holder = "batch"
    for _ in range(21):
        slots.release("box", key=holder)
        await _settle()
        holder = "alice" if served[-1] == "alice" else "batch"
    await asyncio.gather(*tasks)
    assert served.index("alice") <= 1
    # the batch itself stays first come first served
    assert [s for s in served if s != "alice"] == [f"b{i}" for i in range(20)]


async def test_keys_take_turns_and_a_late_key_joins_the_rotation() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100)
    slots.try_acquire(["box"], key="x")
    served: list[str] = []
    tasks = [await _queue(slots, "a", f"a{i}", served) for i in range(3)]
    tasks += [await _queue(slots, "b", f"b{i}", served) for i in range(3)]
    slots.release("box", key="x")
    await _settle()
    tasks.append(await _queue(slots, "c", "c0", served))
    while len(served) < 7:
        slots.release("box", key=served[-1][0])
        await _settle()
    await asyncio.gather(*tasks)
    # c waits one turn of each key already queued, not behind all their requests
    assert served == ["a0", "b0", "a1", "b1", "c0", "a2", "b2"]


async def test_priority_zero_still_goes_before_every_key_of_priority_one() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100)
    slots.try_acquire(["box"], key="x")
    served: list[str] = []
    tasks = [await _queue(slots, "a", "a0", served), await _queue(slots, "b", "b0", served),
             await _queue(slots, "agent", "agent", served, priority=0)]
    for _ in range(3):
        slots.release("box", key="x" if not served else served[-1][0])
        await _settle()
    await asyncio.gather(*tasks)
    assert served[0] == "agent"


async def test_cancelled_and_timed_out_waiters_give_back_their_places() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100)
    slots.try_acquire(["box"], key="x")
    served: list[str] = []
    batch = [await _queue(slots, "batch", f"b{i}", served) for i in range(3)]
    batch[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch[0]
    assert slots.queue_depth == 2
    with pytest.raises(CapacityExceeded):
        await slots.acquire(["box"], priority=1, timeout=0.01, key="late")
    assert slots.queue_depth == 2
    slots.release("box", key="x")
    await _settle()
    assert served == ["b1"]
    # a slot handed over at the moment of cancelling is given back, not lost
    slots.release("box", key="batch")
    batch[2].cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch[2]
    assert slots.in_flight["box"] == 0
    assert slots.key_in_flight == {}
    assert slots.queue_depth == 0


async def test_a_key_at_its_max_concurrent_waits_while_another_key_is_served() -> None:
    slots = SlotManager({"a": 2, "b": 2}, queue_max_size=100)
    capped = KeyQuota(max_concurrent=2)
    assert slots.try_acquire(["a", "b"], key="batch", limits=capped) == "a"
    assert slots.try_acquire(["a", "b"], key="batch", limits=capped) == "a"
    served: list[str] = []

    async def ask(key: str, limits: KeyQuota) -> str:
        pid = await slots.acquire(["a", "b"], priority=1, timeout=5, key=key, limits=limits)
        served.append(key)
        return pid

    third = asyncio.create_task(ask("batch", capped))
    await asyncio.sleep(0)
    assert slots.queue_depth == 1  # provider b is free, the key is not
    assert await ask("alice", KeyQuota()) == "b"
    slots.release("a", key="batch")
    assert await third == "a"
    assert slots.key_in_flight["batch"] == 2


async def test_a_key_past_its_max_queued_gets_429_with_retry_after() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100)
    limits = KeyQuota(max_concurrent=1, max_queued=2)
    slots.try_acquire(["box"], key="k", limits=limits)
    served: list[str] = []
    tasks = [await _queue(slots, "k", f"k{i}", served, limits=limits) for i in range(2)]
    with pytest.raises(KeyQueueFull) as info:
        await slots.acquire(["box"], priority=1, timeout=5, key="k", limits=limits)
    assert info.value.status == 429 and info.value.code == "key_queue_full"
    assert int(info.value.headers()["Retry-After"]) >= 1
    # another key still queues
    other = await _queue(slots, "other", "o", served)
    assert slots.queue_depth == 3
    for _ in range(3):
        slots.release("box", key="other" if served and served[-1] == "o" else "k")
        await _settle()
    await asyncio.gather(*tasks, other)


async def test_a_model_cap_holds_on_a_multi_model_server() -> None:
    slots = SlotManager({"box": 4}, queue_max_size=100, model_capacities={"box/big": 1})
    big, small = {"box": "box/big"}, {"box": "box/small"}
    assert slots.try_acquire(["box"], models=big) == "box"
    assert slots.try_acquire(["box"], models=big) is None
    assert slots.try_acquire(["box"], models=small) == "box"
    waiter = asyncio.create_task(slots.acquire(["box"], priority=1, timeout=5, models=big))
    await asyncio.sleep(0)
    assert slots.queue_depth == 1
    slots.release("box", model="box/small")
    await _settle()
    assert not waiter.done()  # the box has room, the model has not
    slots.release("box", model="box/big")
    assert await waiter == "box"
    assert slots.model_in_flight == {"box/big": 1}


async def test_through_the_engine_a_person_is_not_stuck_behind_a_batch(
        engine_factory, upstream) -> None:
    upstream.default = Behaviour(delay=0.03)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")])

    def body(tag: str) -> dict[str, object]:
        return {"model": "m", "messages": [{"role": "user", "content": tag}]}

    batch = [asyncio.create_task(engine.complete(body(f"b{i}"), RequestContext(key_name="batch")))
             for i in range(20)]
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    await asyncio.sleep(0.01)
    person = asyncio.create_task(engine.complete(body("alice"), RequestContext(key_name="alice")))
    await asyncio.gather(*batch, person)
    served = [r.body["messages"][0]["content"] for r in upstream.requests]
    # b0 was in flight when alice came; at most one more batch request goes before her
    assert served.index("alice") <= 2
    assert upstream.max_in_flight == 1
    assert engine.slots.in_flight["box"] == 0 and engine.slots.key_in_flight == {}


# ------------------------------------------------------------------ fifo (server.scheduling)


async def test_fifo_serves_a_priority_in_arrival_order_whoever_the_key() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100, scheduling="fifo")
    slots.try_acquire(["box"], key="x")
    served: list[str] = []
    tasks = [await _queue(slots, "batch", f"b{i}", served) for i in range(5)]
    tasks.append(await _queue(slots, "alice", "alice", served))
    tasks.append(await _queue(slots, "agent", "agent", served, priority=0))
    holder = "x"
    for _ in range(7):
        slots.release("box", key=holder)
        await _settle()
        holder = {"a": "alice", "b": "batch"}.get(served[-1][0], "agent")
    await asyncio.gather(*tasks)
    # priority 0 first; then alice only after the whole batch that came before her
    assert served == ["agent", "b0", "b1", "b2", "b3", "b4", "alice"]


async def test_fifo_still_holds_key_and_model_caps() -> None:
    slots = SlotManager({"box": 4}, queue_max_size=100, scheduling="fifo",
                        model_capacities={"box/big": 1})
    big, small = {"box": "box/big"}, {"box": "box/small"}
    capped = KeyQuota(max_concurrent=1)
    assert slots.try_acquire(["box"], key="batch", limits=capped, models=small) == "box"
    assert slots.try_acquire(["box"], key="a", models=big) == "box"
    served: list[str] = []
    first = await _queue(slots, "batch", "batch", served, limits=capped, models=small)
    second = await _queue(slots, "b", "big", served, models=big)
    # the box has room, but the key's and the model's caps hold: both wait
    assert slots.queue_depth == 2
    third = await _queue(slots, "c", "small", served, models=small)
    await _settle()
    assert served == ["small"]
    slots.release("box", key="a", model="box/big")
    await _settle()
    assert served == ["small", "big"]
    slots.release("box", key="batch", model="box/small")
    await asyncio.gather(first, second, third)
    assert served == ["small", "big", "batch"]


async def test_switching_scheduling_re_sorts_the_waiters_already_queued() -> None:
    slots = SlotManager({"box": 1}, queue_max_size=100, scheduling="fifo")
    slots.try_acquire(["box"], key="x")
    served: list[str] = []
    tasks = [await _queue(slots, "batch", f"b{i}", served) for i in range(3)]
    tasks.append(await _queue(slots, "alice", "alice", served))
    assert [label for label, _, _ in slots.waiting()] == [None] * 4
    slots.set_scheduling("fair")
    slots.release("box", key="x")
    await _settle()
    slots.release("box", key="batch")
    await _settle()
    assert served == ["b0", "alice"]
    slots.set_scheduling("fifo")
    slots.release("box", key="alice")
    await _settle()
    slots.release("box", key="batch")
    await asyncio.gather(*tasks)
    assert served == ["b0", "alice", "b1", "b2"]
    assert slots.queue_depth == 0 and slots.in_flight["box"] == 1


async def test_through_the_engine_fifo_keeps_a_person_behind_the_batch_and_a_reload_switches(
        engine_factory, upstream) -> None:
    upstream.default = Behaviour(delay=0.03)
    engine = engine_factory([provider("box", upstream.url, max_concurrent=1)],
                            [model("m", "box")], scheduling="fifo")

    def body(tag: str) -> dict[str, object]:
        return {"model": "m", "messages": [{"role": "user", "content": tag}]}

    async def round_(tag: str) -> list[str]:
        upstream.reset_stats()
        batch = [asyncio.create_task(engine.complete(body(f"{tag}{i}"),
                                                     RequestContext(key_name="batch")))
                 for i in range(6)]
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        await asyncio.sleep(0.01)
        person = asyncio.create_task(engine.complete(body("alice"),
                                                     RequestContext(key_name="alice")))
        await asyncio.gather(*batch, person)
        return [r.body["messages"][0]["content"] for r in upstream.requests]

    served = await round_("b")
    assert served.index("alice") == 6  # behind every batch request that came first
    settings = engine.settings.model_copy(
        update={"server": engine.settings.server.model_copy(update={"scheduling": "fair"})})
    assert "server: scheduling" in engine.reload(settings)
    served = await round_("c")
    assert served.index("alice") <= 2
    assert upstream.max_in_flight == 1
    assert engine.slots.in_flight["box"] == 0 and engine.slots.queue_depth == 0
