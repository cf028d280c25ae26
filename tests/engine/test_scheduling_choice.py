"""Scheduling ``fair``: candidates chosen by expected time to first token (issue 14 items
2, 3 and 6) against real fake upstreams, with the engine's clock injected.

Every upstream here is a real HTTP server on 127.0.0.1. The clock only drives what lai
learns (service times) and what counts as warm; the waits themselves are real and
short. Under ``fifo`` none of these rules apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from lai.config.models import Settings
from lai.engine.engine import Engine
from lai.engine.estimate import DEFAULT_SERVICE_S, Estimator
from lai.engine.events import Event, RequestFinished
from lai.engine.types import RequestContext
from lai.errors import PermissionDenied, UpstreamError
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider


class StillClock:
    """Time stands still unless the test moves it (``advance``); sleeps return at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_750_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


Made = tuple[Engine, StillClock, list[RequestFinished]]


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Made]]:
    clients: list[httpx.AsyncClient] = []

    def make(providers: list[dict[str, Any]], models: list[dict[str, Any]],
             **server: Any) -> Made:
        settings = Settings.model_validate(
            {"server": {"queue_timeout": 10, **server}, "providers": providers,
             "models": models})
        client = httpx.AsyncClient(trust_env=False)
        clients.append(client)
        clock = StillClock()
        engine = Engine(settings, client, clock=clock, retry_delay=0.01)
        finished: list[RequestFinished] = []

        def keep(event: Event) -> None:
            if isinstance(event, RequestFinished):
                finished.append(event)

        engine.events.subscribe(keep)
        return engine, clock, finished

    yield make
    for client in clients:
        await client.aclose()


def body(model_name: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model_name, "messages": [{"role": "user", "content": text}], **extra}


async def busy(engine: Engine, fake: FakeUpstream, model_name: str,
               ctx: RequestContext | None = None) -> asyncio.Task[Any]:
    """A request that holds ``fake``'s only slot until its (scripted) delay ends."""
    return await on_box(fake, engine.complete(body(model_name), ctx or RequestContext()))


async def on_box(fake: FakeUpstream, request: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start ``request``; return once its chat request has reached ``fake``, which is
    answering it. ``in_flight == 1`` alone was not enough: the fake runs in its own
    thread, and the request before could still be counted there after its client had the
    answer, so the clock moved before this one was sent (flaked under load)."""
    seen = fake.chat_count
    task = asyncio.create_task(request)
    await fake.wait_for_async(lambda: fake.chat_count > seen)
    return task


# -- the estimate ------------------------------------------------------------------------


def test_the_estimate_learns_service_time_and_prefill_rate() -> None:
    settings = Settings.model_validate({
        "providers": [provider("box", "http://127.0.0.1:9", max_concurrent=2)],
        "models": [model("m", "box", load_seconds=12)]})
    p, m = settings.providers[0], settings.models[0]
    est = Estimator()
    guess = est.estimate(p, m, prompt_tokens=1000, in_flight=2, waiting=1, capacity=2,
                         warm=True)
    # 2 in flight + 1 waiting on 2 slots: two service times of the default, over 2 slots.
    assert guess.wait_s == pytest.approx(2 * DEFAULT_SERVICE_S["local"] / 2)
    for _ in range(30):
        est.observe("box", "m", service_s=2.0, prompt_tokens=4000, prefill_s=1.0)
    learnt = est.estimate(p, m, prompt_tokens=1000, in_flight=2, waiting=1, capacity=2,
                          warm=False)
    assert learnt.wait_s == pytest.approx(2.0, rel=0.01)
    assert learnt.load_s == 12  # cold: the model's load_seconds
    assert learnt.prefill_s == pytest.approx(1000 / 4000, rel=0.01)
    assert learnt.total_s == pytest.approx(learnt.wait_s + 12 + learnt.prefill_s)
    assert "cold" in learnt.reason
    free = est.estimate(p, m, prompt_tokens=1000, in_flight=0, waiting=0, capacity=2,
                        warm=True, cached_tokens=800)
    assert free.wait_s == 0 and free.load_s == 0
    assert free.prefill_s == pytest.approx(200 / 4000, rel=0.01)  # the prefix was cached


# -- warm before cold -----------------------------------------------------------------


async def test_the_warm_model_is_chosen_over_a_cold_one(make_engine, upstream_factory,
                                                        caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="lai.engine")
    a, b = upstream_factory(), upstream_factory()
    for scheduling, expected in (("fair", "b"), ("fifo", "a")):
        engine, _, finished = make_engine(
            [provider("a", a.url), provider("b", b.url)],
            [model("m", "a"), model("x", "a"), model("m", "b", load_seconds=10)],
            scheduling=scheduling)
        await engine.complete(body("a/x"), RequestContext())  # box a has x loaded
        await engine.complete(body("b/m"), RequestContext())  # box b has m loaded
        a.reset_stats()
        done = await engine.complete(body("m"), RequestContext())
        assert done.provider_id == expected, scheduling
        if scheduling == "fair":
            # no swap: box a never got a request for m, which would evict x
            assert a.chat_count == 0
            assert finished[-1].estimate_ms is not None and finished[-1].estimate_ms < 1000
            assert "b/m" in (finished[-1].route_reason or "")
            logged = [r.getMessage() for r in caplog.records if "expected first token" in
                      r.getMessage()]
            assert logged and "m on b" in logged[-1] and "best of 2" in logged[-1]
        else:
            assert finished[-1].estimate_ms is None and finished[-1].route_reason is None


async def test_a_cold_model_on_a_free_box_waits_for_a_warm_one_expected_sooner(
    make_engine, upstream_factory
) -> None:
    a, b = upstream_factory(), upstream_factory()
    engine, _, finished = make_engine(
        [provider("a", a.url, max_concurrent=1), provider("b", b.url, max_concurrent=1)],
        [model("m", "a", load_seconds=60), model("x", "a"), model("m", "b")])
    b.script(Behaviour(delay=0.3))
    holder = await busy(engine, b, "b/m")
    # a is free but m is cold there (60 s to load); b is busy for about one service
    # time (8 s by default): the request waits for b instead of swapping m in on a.
    done = await engine.complete(body("m"), RequestContext())
    await holder
    assert done.provider_id == "b"
    assert a.chat_count == 0
    assert "b/m, wait" in (finished[-1].route_reason or "")


async def test_the_wait_counts_the_service_time_of_the_providers_other_models(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    engine, clock, finished = make_engine(
        [provider("box", box.url, priority=1, max_concurrent=1),
         provider("cloud", cloud.url + "/v1", type="openai", priority=10,
                  auth_type="bearer", auth_secret="sk-test")],
        [model("summary", "box", load_seconds=0),
         model("chat", "box", load_seconds=0, fallbacks=["gpt"]), model("gpt", "cloud")],
        prefer_priority_within=5)
    # The box's requests: long summaries (30 s each), short chats (1 s each).
    for name, seconds in (("summary", 30.0), ("summary", 30.0), ("chat", 1.0),
                          ("chat", 1.0), ("summary", 30.0)):
        box.script(Behaviour(delay=0.2))
        task = await on_box(box, engine.complete(body(name), RequestContext()))
        clock.advance(seconds)
        await task
    # A summary holds the box: a chat behind it waits for a summary, not a chat (1 s,
    # within 5 s, which kept the cloud back), so it goes to the cloud.
    box.script(Behaviour(delay=2.0))
    holder = await busy(engine, box, "summary")
    done = await engine.complete(body("chat"), RequestContext())
    await holder
    assert done.provider_id == "cloud"
    assert "box/chat" not in (finished[-1].route_reason or "")


def _box_and_cloud(box: FakeUpstream, cloud: FakeUpstream) -> tuple[list[dict[str, Any]],
                                                                      list[dict[str, Any]]]:
    return ([provider("box", box.url, priority=1, max_concurrent=1),
             provider("cloud", cloud.url + "/v1", type="openai", priority=10,
                      auth_type="bearer", auth_secret="sk-test")],
            [model("chat", "box", context_window=65536),
             model("coder", "box", context_window=65536, load_seconds=0, fallbacks=["gpt"]),
             model("gpt", "cloud", context_window=65536)])


async def _measure_chat(engine: Engine, clock: StillClock, box: FakeUpstream, *,
                        tokens: int, seconds: float) -> None:
    """A streamed chat request whose first token came ``seconds`` after it took the box."""
    box.script(Behaviour(prefill_delay=1.0))  # time for the test to move the clock
    opening = asyncio.create_task(engine.stream(
        body("chat", "word " * (tokens * 4 // 5), stream=True), RequestContext()))
    await box.wait_for_async(lambda: box.in_flight == 1)
    clock.advance(seconds)
    stream = await opening
    try:
        async for _ in stream:
            pass
    finally:
        await stream.aclose()


async def test_a_model_not_measured_yet_borrows_its_providers_prefill_rate(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    engine, clock, _ = make_engine(*_box_and_cloud(box, cloud), prefer_priority_within=5)
    await engine.complete(body("chat"), RequestContext())  # warm now
    # The box read a 4000-token prompt of chat in 4 s: 1000 tokens a second.
    await _measure_chat(engine, clock, box, tokens=4000, seconds=4.0)
    # An 8000-token prompt for coder, never measured: 8 s at the box's rate, past 5 s,
    # so the cloud (4 s by its guess) serves it. Without the box's rate coder's estimate
    # would be a guess only, and a free box is tried on a guess.
    cloud.reset_stats()
    done = await engine.complete(body("coder", "word " * 6400), RequestContext())
    assert done.provider_id == "cloud"


async def test_a_free_box_only_the_guess_calls_slow_is_tried_before_the_cloud(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    engine, clock, finished = make_engine(*_box_and_cloud(box, cloud),
                                          prefer_priority_within=5)
    # Nothing measured: an 8000-token prompt is 8 s at the guessed 1000 tokens a second,
    # past 5 s, and the cloud's guess (2000) says 4 s; but the box is free: it is tried.
    done = await engine.complete(body("coder", "word " * 6400), RequestContext())
    assert done.provider_id == "box"
    assert cloud.chat_count == 0
    assert "(guessed)" in (finished[-1].route_reason or "")
    # Once measured fast (4000 tokens in 1 s) it keeps the traffic on its own merits.
    await engine.complete(body("chat"), RequestContext())  # warm (a cold one teaches none)
    await _measure_chat(engine, clock, box, tokens=4000, seconds=1.0)
    done = await engine.complete(body("coder", "word " * 6400), RequestContext())
    assert done.provider_id == "box"
    assert "(guessed)" not in (finished[-1].route_reason or "")
    assert cloud.chat_count == 0


# -- priorities -------------------------------------------------------------------


async def test_a_lower_priority_waits_while_a_higher_one_is_expected_soon(
    make_engine, upstream_factory
) -> None:
    hi, lo = upstream_factory(), upstream_factory()
    providers = [provider("hi", hi.url, priority=1, max_concurrent=1),
                 provider("lo", lo.url, priority=2, max_concurrent=1)]
    models = [model("m", "hi"), model("m", "lo")]
    # Nothing learnt: hi's wait is one default service time, 8 s, past 5 s: lo serves.
    engine, clock, _ = make_engine(providers, models, prefer_priority_within=5)
    hi.script(Behaviour(delay=2.0))
    holder = await busy(engine, hi, "hi/m")
    assert (await engine.complete(body("m"), RequestContext())).provider_id == "lo"
    await holder
    # hi's requests take 1 s (as the clock says): now it is expected within 5 s.
    for _ in range(2):
        hi.script(Behaviour(delay=0.2))
        task = await on_box(hi, engine.complete(body("hi/m"), RequestContext()))
        clock.advance(1.0)
        await task
    lo.reset_stats()
    hi.script(Behaviour(delay=0.3))
    holder = await busy(engine, hi, "hi/m")
    done = await engine.complete(body("m"), RequestContext())
    await holder
    assert done.provider_id == "hi"
    assert lo.chat_count == 0


# -- spill to the cloud -------------------------------------------------------------


def _lab(box: FakeUpstream, cloud: FakeUpstream) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    return ([provider("box", box.url, priority=1, max_concurrent=1),
             provider("cloud", cloud.url + "/v1", type="openai", priority=10,
                      auth_type="bearer", auth_secret="sk-test")],
            [model("local", "box"), model("gpt", "cloud")])


async def test_auto_spills_to_the_cloud_when_the_local_wait_passes_spill_after(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    # The box is busy for one service time, expected 8 s: past 3 s, so the cloud at once.
    engine, _, finished = make_engine(providers, models, spill_after="3s")
    box.script(Behaviour(delay=0.5))
    holder = await busy(engine, box, "local")
    done = await engine.complete(body("auto"), RequestContext())
    assert done.provider_id == "cloud"
    assert "spill" in (finished[-1].route_reason or "")
    # A key's own --spill-after of 20 s: it waits for the box instead.
    waited = await engine.complete(body("auto"), RequestContext(spill_after=20.0))
    assert waited.provider_id == "box"
    await holder


async def test_a_batch_keys_queue_counts_as_one_turn_in_a_persons_estimate(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    # The box (one slot, 8 s a request by the guess) is busy and a batch key has five
    # requests queued for it. Under fair a person's request waits for at most one of
    # them: about 16 s, within spill_after 20 s, so it waits for the box. Counting the
    # batch's five as ahead (48 s) would have sent it to the cloud, paid.
    engine, _, finished = make_engine(providers, models, spill_after="20s")
    box.default = Behaviour(delay=0.05)
    holder = await busy(engine, box, "local", RequestContext(key_name="batch"))
    batch = [asyncio.create_task(engine.complete(body("local"),
                                                 RequestContext(key_name="batch")))
             for _ in range(5)]
    await box.wait_for_async(lambda: engine.slots.queue_depth == 5)
    person = await engine.complete(body("auto"), RequestContext(key_name="ana"))
    assert person.provider_id == "box"
    assert cloud.chat_count == 0
    mine = next(f for f in finished if f.context.key_name == "ana")
    assert "2 ahead" in (mine.route_reason or "")  # the one in flight, one batch turn
    await asyncio.gather(holder, *batch)


async def test_a_lower_priority_queue_is_not_ahead_in_the_estimate(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    # Priority 5 requests queued for the box are served after a priority 1 one: they do
    # not count in its estimate (8 s for the one in flight, within 10 s: no spill).
    engine, _, finished = make_engine(providers, models, spill_after="10s")
    box.default = Behaviour(delay=0.05)
    holder = await busy(engine, box, "local", RequestContext(key_name="low", priority=5))
    low = [asyncio.create_task(engine.complete(body("local"),
                                               RequestContext(key_name="low", priority=5)))
           for _ in range(3)]
    await box.wait_for_async(lambda: engine.slots.queue_depth == 3)
    person = await engine.complete(body("auto"), RequestContext(key_name="ana"))
    assert person.provider_id == "box"
    assert cloud.chat_count == 0
    await asyncio.gather(holder, *low)


async def test_the_cloud_joins_once_the_wait_passes_spill_after(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    engine, clock, finished = make_engine(providers, models, spill_after=0.05)
    await engine.complete(body("local"), RequestContext())  # warm
    box.script(Behaviour(delay=0.05))
    task = await on_box(box, engine.complete(body("local"), RequestContext()))
    clock.advance(0.01)  # the box's requests take 0.01 s
    await task
    # This one holds the box 0.9 s: expected 0.01 s, within spill_after, so the cloud is
    # kept back; once the wait passes 0.05 s the cloud joins and serves it while the box
    # is still busy. It used to join only a second past the estimate, whatever
    # spill_after said (1.01 s), and the freed box served it.
    box.script(Behaviour(delay=0.9))
    holder = await busy(engine, box, "local")
    done = await engine.complete(body("auto"), RequestContext())
    assert done.provider_id == "cloud"
    assert not holder.done()
    assert "waited on every candidate" in (finished[-1].route_reason or "")
    await holder


async def test_a_local_only_key_never_reaches_the_cloud(make_engine, upstream_factory) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    engine, _, _ = make_engine(providers, models, spill_after="0s")
    box.script(Behaviour(delay=0.3))
    holder = await busy(engine, box, "local")
    home = RequestContext(local_only=True)
    done = await engine.complete(body("auto"), home)
    await holder
    assert done.provider_id == "box"
    with pytest.raises(PermissionDenied) as refused:
        await engine.complete(body("gpt"), home)
    assert "local-only" in refused.value.message and "cloud" in refused.value.message
    assert refused.value.status == 403
    # Even a failing box does not send it to the cloud: it fails at home.
    box.script(Behaviour(mode="reset"))
    cloud.reset_stats()
    with pytest.raises(UpstreamError):
        await engine.complete(body("auto"), home)
    assert cloud.chat_count == 0


async def test_fifo_ignores_spill_after_and_takes_the_first_free_provider(
    make_engine, upstream_factory
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    providers, models = _lab(box, cloud)
    engine, _, finished = make_engine(providers, models, spill_after="60s",
                                      scheduling="fifo")
    box.script(Behaviour(delay=2.0))
    holder = await busy(engine, box, "local")
    done = await engine.complete(body("auto"), RequestContext())
    await holder
    assert done.provider_id == "cloud"  # today's behaviour: the first with room
    assert finished[-1].route_reason is None


# -- sticky conversations ----------------------------------------------------------


async def test_a_conversation_goes_back_to_the_provider_of_its_last_turn(
    make_engine, upstream_factory
) -> None:
    a, b = upstream_factory(), upstream_factory()
    for scheduling in ("fair", "fifo"):
        engine, _, finished = make_engine(
            [provider("a", a.url, max_concurrent=1), provider("b", b.url, max_concurrent=1)],
            [model("m", "a"), model("m", "b")], sticky_within=10, scheduling=scheduling)
        a.script(Behaviour(delay=0.3))
        holder = await busy(engine, a, "a/m")
        turn1 = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": "what is 2+2?"}]}
        first = await engine.complete(turn1, RequestContext(conversation_id="c1"))
        await holder
        assert first.provider_id == "b"  # a was busy
        # Turn 2: b is busy now and a is free, but b holds the conversation's prefix and
        # is expected within sticky_within (10 s) of a: it waits for b.
        b.script(Behaviour(delay=0.3))
        holder = await busy(engine, b, "b/m")
        turn2 = {**turn1, "messages": [*turn1["messages"],
                                       {"role": "assistant", "content": "4"},
                                       {"role": "user", "content": "and 3+3?"}]}
        second = await engine.complete(turn2, RequestContext(conversation_id="other-id"))
        await holder
        if scheduling == "fair":
            # Found by the conversation's opening, though the client sent another id.
            assert second.provider_id == "b"
            assert "sticky" in (finished[-1].route_reason or "")
        else:
            assert second.provider_id == "a"


# -- the queue listing ---------------------------------------------------------


async def test_queued_requests_carry_an_estimated_start(make_engine, upstream) -> None:
    engine, _, _ = make_engine([provider("box", upstream.url, max_concurrent=1)],
                               [model("m", "box")])
    upstream.script(Behaviour(delay=0.5))
    holder = await busy(engine, upstream, "m")
    waiters = [asyncio.create_task(engine.complete(body("m"), RequestContext()))
               for _ in range(2)]
    for _ in range(100):
        if len(engine.queued()) == 2:
            break
        await asyncio.sleep(0.005)
    queued = engine.queued()
    service = DEFAULT_SERVICE_S["local"]
    assert [q.estimated_start_ms for q in queued] == [service * 1000, 2 * service * 1000]
    assert queued[0].to_dict()["estimated_start_ms"] == round(service * 1000)
    await asyncio.gather(holder, *waiters)


async def test_a_wait_far_past_its_estimate_joins_the_held_back_candidates(
    make_engine, upstream_factory
) -> None:
    hi, lo = upstream_factory(), upstream_factory()
    engine, clock, finished = make_engine(
        [provider("hi", hi.url, priority=1, max_concurrent=1),
         provider("lo", lo.url, priority=2, max_concurrent=1)],
        [model("m", "hi"), model("m", "lo")], prefer_priority_within=0.5)
    for _ in range(3):  # hi answers in 0.1 s (as the clock says)
        hi.script(Behaviour(delay=0.2))
        task = await on_box(hi, engine.complete(body("hi/m"), RequestContext()))
        clock.advance(0.1)
        await task
    # Now hi hangs on a request far longer than that: the request that waited for hi
    # (lo held back) gives up on the estimate after its patience (1 s) and takes lo.
    # (hi holds it 10 s of real time, far past the 1 s patience even on a loaded machine;
    # the holder is cancelled once lo has answered.)
    hi.script(Behaviour(delay=10.0))
    holder = await busy(engine, hi, "hi/m")
    done = await engine.complete(body("m"), RequestContext())
    assert done.provider_id == "lo"
    assert not holder.done()  # hi was still busy: lo served it, not a freed hi
    reason = finished[-1].route_reason or ""
    assert "priority 1 expected within 0.5s" in reason and "past the estimate" in reason
    holder.cancel()


async def test_a_reload_that_moves_a_provider_forgets_its_learnt_times(
    make_engine, upstream_factory
) -> None:
    first, second = upstream_factory(), upstream_factory()
    providers = [provider("box", first.url)]
    models = [model("m", "box")]
    engine, clock, _ = make_engine(providers, models)
    first.script(Behaviour(delay=0.2))
    task = await on_box(first, engine.complete(body("m"), RequestContext()))
    clock.advance(2.0)
    await task
    p, m = engine.settings.providers[0], engine.settings.models[0]
    assert engine.estimator.provider_service_s(p, m) == pytest.approx(2.0)
    engine.reload(Settings.model_validate({"server": {"queue_timeout": 10},
                                           "providers": providers, "models": models}))
    assert engine.estimator.provider_service_s(p, m) == pytest.approx(2.0)  # same box
    engine.reload(Settings.model_validate({
        "server": {"queue_timeout": 10}, "providers": [provider("box", second.url)],
        "models": models}))
    # Another box now: the old one's service time says nothing about it.
    assert engine.estimator.provider_service_s(p, m) == DEFAULT_SERVICE_S["local"]
