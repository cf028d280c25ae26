"""Health that reacts: the state machine, the re-probe backoff on the engine's clock, and
``auto``'s status; probes go to real servers on 127.0.0.1 (a fake upstream, or a port
nothing listens on)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import httpx

from lai.engine.engine import Engine
from lai.engine.events import HealthChecked
from lai.engine.health import REPROBE_FIRST_S, UNHEALTHY_AFTER
from tests.fakes.upstream import FakeUpstream


class FakeClock:
    """The engine's clock, driven by the test: ``sleep`` waits until ``advance`` passes it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_750_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time on, waking every sleeper whose time has come."""
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
        self.now = target


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``cond``: probes do real network IO, so there is no event to wait on."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout}s"
        await asyncio.sleep(0.005)


def make_engine(url: str, clock: FakeClock, *, interval: float = 30,
                extra: list[dict[str, Any]] | None = None) -> Engine:
    from lai.config.models import Settings

    providers = [{"id": "box", "endpoint": url, "type": "local",
                  "health_check_interval": interval, "health_check_timeout": 2}, *(extra or [])]
    models = [{"id": f"m-{p['id']}", "provider_id": p["id"]} for p in providers]
    settings = Settings.model_validate({"providers": providers, "models": models})
    return Engine(settings, httpx.AsyncClient(trust_env=False), clock=clock)


def probes(engine: Engine) -> list[HealthChecked]:
    seen: list[HealthChecked] = []
    engine.events.subscribe(lambda e: seen.append(e) if isinstance(e, HealthChecked) else None)
    return seen


def auto(engine: Engine) -> str:
    return engine.models()[0]["status"]


async def test_failures_from_healthy_count_but_a_refused_connection_is_at_once() -> None:
    engine = make_engine("http://127.0.0.1:9", FakeClock())
    health, state = engine.health, engine.states["box"]
    health.record_success("box", 10.0)
    for _ in range(UNHEALTHY_AFTER - 1):
        health.record_failure("box", "read timeout")
    assert state.status == "healthy"
    health.record_failure("box", "read timeout")
    assert state.status == "unhealthy"
    health.record_success("box")
    assert state.status == "healthy"
    health.record_failure("box", "connection refused")
    assert state.status == "unhealthy"
    health.record_success("box")
    health.record_failure("box", "cannot connect: no route to host")
    assert state.status == "unhealthy"
    # An upstream's own words are not taken for a refused connection.
    health.record_success("box")
    health.record_failure("box", "HTTP 502: connection refused by backend")
    assert state.status == "healthy"
    await engine.client.aclose()


async def test_no_signal_is_unknown_and_a_first_failure_is_unhealthy() -> None:
    engine = make_engine("http://127.0.0.1:9", FakeClock())
    assert engine.states["box"].status == "unknown" and auto(engine) == "unknown"
    engine.health.record_failure("box", "HTTP 500: boom")
    assert engine.states["box"].status == "unhealthy" and auto(engine) == "unhealthy"
    await engine.client.aclose()


async def test_auto_reflects_its_providers() -> None:
    clock = FakeClock()
    engine = make_engine("http://127.0.0.1:9", clock, extra=[
        {"id": "other", "endpoint": "http://127.0.0.1:9", "type": "local"},
        {"id": "cloud", "endpoint": "https://api.example.invalid/v1", "type": "openai"},
    ])
    health = engine.health
    assert auto(engine) == "unknown"
    health.record_failure("box", "connection refused")
    assert auto(engine) == "unknown"  # "other" has no signal yet
    health.record_failure("other", "connection refused")
    health.record_success("cloud", 50.0)
    assert auto(engine) == "healthy"  # auto spills to the cloud (cloud_fallback = true)
    health.record_failure("cloud", "connection refused")
    assert auto(engine) == "unhealthy"
    health.record_success("other", 20.0)
    assert auto(engine) == "healthy"
    engine.set_enabled("other", False)
    assert auto(engine) == "unhealthy"  # a disabled provider does not count
    await engine.client.aclose()


async def test_a_dead_box_is_unhealthy_after_the_first_probe_and_reprobed_with_backoff() -> None:
    clock = FakeClock()
    box = FakeUpstream().start()
    box.refuse()  # nothing listens on its port now
    engine = make_engine(box.url, clock, interval=10)
    seen = probes(engine)
    await engine.start()
    try:
        await until(lambda: len(seen) == 1, "the start-up probe")
        assert engine.states["box"].status == "unhealthy"
        assert engine.states["box"].last_error == "health check failed: connection refused"
        await until(lambda: clock.sleeps == [REPROBE_FIRST_S], "the first pause")
        expected = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        for n, pause in enumerate(expected[:-1], start=2):
            clock.advance(pause)
            await until(lambda n=n: len(seen) == n and len(clock.sleeps) == n, "a re-probe")
        assert clock.sleeps == expected

        # The server comes back: the next re-probe (<= 10 s away) finds it.
        box.start()  # same port
        clock.advance(10)
        await until(lambda: engine.states["box"].status == "healthy", "the recovery")
        await until(lambda: len(clock.sleeps) == len(expected) + 1, "the next pause")
        assert clock.sleeps[-1] == 10  # healthy again: back to the interval
    finally:
        await engine.close()
        await engine.client.aclose()
        box.stop()


async def test_a_live_refusal_wakes_the_loop_to_reprobe_within_a_second() -> None:
    clock = FakeClock()
    with FakeUpstream() as upstream:
        engine = make_engine(upstream.url, clock, interval=30)
        seen = probes(engine)
        await engine.start()
        try:
            await until(lambda: clock.sleeps == [30], "the healthy pause")
            assert engine.states["box"].status == "healthy" and len(seen) == 1
            # A live request found the box gone (the engine reports it like this).
            engine.health.record_failure("box", "connection refused")
            assert engine.states["box"].status == "unhealthy"
            await until(lambda: clock.sleeps[-1] == REPROBE_FIRST_S, "the re-probe pause")
            clock.advance(REPROBE_FIRST_S)
            # The box answers that probe (it was a blip): healthy within a second.
            await until(lambda: len(seen) == 2, "the re-probe")
            assert engine.states["box"].status == "healthy"
        finally:
            await engine.close()
            await engine.client.aclose()


async def test_a_provider_enabled_at_run_time_is_probed_at_once() -> None:
    clock = FakeClock()
    with FakeUpstream() as upstream:
        engine = make_engine(upstream.url, clock, interval=30)
        engine.states["box"].enabled = False  # as `enabled = false` in the config
        seen = probes(engine)
        await engine.start()
        try:
            await until(lambda: clock.sleeps == [30], "the first pause")
            assert seen == [] and engine.states["box"].status == "disabled"
            engine.set_enabled("box", True)
            assert engine.states["box"].status == "unknown"
            await until(lambda: len(seen) == 1, "the probe on enable")  # no clock advance
            assert engine.states["box"].status == "healthy"
        finally:
            await engine.close()
            await engine.client.aclose()
