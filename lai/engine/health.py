"""Provider health: the state machine, the probes, and the background loop.

States: ``unknown`` until the first signal; a passing probe is ``healthy``, or
``degraded`` when it took longer than 5 s; 3 consecutive failures (probes or live
requests) make ``unhealthy``; one success restores it. A disabled provider shows
``disabled`` whatever its last health. Probes are skipped while a provider has requests
in flight: the live traffic already tells whether it is alive, and some servers
(llama.cpp) serialise a probe behind a generation or cut a stream short for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from lai.config.models import ProviderConfig
from lai.engine.adapters import adapter_for
from lai.engine.clock import Clock
from lai.engine.events import EventBus, HealthChanged, HealthChecked
from lai.engine.types import ProviderStatus

log = logging.getLogger("lai.engine.health")

DEGRADED_LATENCY_S = 5.0
UNHEALTHY_AFTER = 3


@dataclass
class ProviderState:
    """The mutable live state of one provider, owned by the engine."""

    config: ProviderConfig
    enabled: bool
    health: ProviderStatus = "unknown"
    latency_ms: float | None = None
    last_check: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    warm: dict[str, float] = field(default_factory=dict)
    """model id -> monotonic time it last served a request."""

    @property
    def status(self) -> ProviderStatus:
        return self.health if self.enabled else "disabled"

    @property
    def usable(self) -> bool:
        return self.enabled and self.health != "unhealthy"


class HealthMonitor:
    """Keeps each provider's health from probes and from live request outcomes."""

    def __init__(
        self,
        states: dict[str, ProviderState],
        client: httpx.AsyncClient,
        clock: Clock,
        events: EventBus,
        in_flight: dict[str, int],
    ) -> None:
        self._states = states
        self._client = client
        self._clock = clock
        self._events = events
        self._in_flight = in_flight
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def _set(self, state: ProviderState, new: ProviderStatus, error: str | None) -> None:
        old = state.status
        state.health = new
        if state.status != old:
            log.info("provider %s: %s -> %s%s", state.config.id, old, state.status,
                     f" ({error})" if error else "")
            self._events.emit(
                HealthChanged(state.config.id, old, state.status, self._clock.time(),
                              state.latency_ms, error)
            )

    def record_success(self, provider_id: str, latency_ms: float | None = None) -> None:
        """A probe passed (with its latency) or a live request succeeded (without)."""
        state = self._states[provider_id]
        state.consecutive_failures = 0
        state.last_error = None
        if latency_ms is not None:
            state.latency_ms = latency_ms
            new: ProviderStatus = (
                "degraded" if latency_ms > DEGRADED_LATENCY_S * 1000 else "healthy"
            )
        else:
            new = "healthy" if state.health in ("unknown", "unhealthy") else state.health
        self._set(state, new, None)

    def record_failure(self, provider_id: str, error: str) -> None:
        """A probe failed or a live request failed because of the provider."""
        state = self._states[provider_id]
        state.consecutive_failures += 1
        state.last_error = error
        if state.consecutive_failures >= UNHEALTHY_AFTER:
            self._set(state, "unhealthy", error)

    def notify_toggle(self, provider_id: str, old: ProviderStatus) -> None:
        state = self._states[provider_id]
        if state.status != old:
            self._events.emit(
                HealthChanged(provider_id, old, state.status, self._clock.time(),
                              state.latency_ms, None)
            )

    async def probe(self, provider_id: str) -> None:
        """Probe one provider now and record the outcome. Never raises."""
        state = self._states[provider_id]
        cfg = state.config
        url, headers = adapter_for(cfg).probe(cfg)
        start = self._clock.monotonic()
        error: str | None = None
        try:
            resp = await self._client.get(
                url, headers=headers, timeout=httpx.Timeout(cfg.health_check_timeout)
            )
            await resp.aread()
            if not 200 <= resp.status_code < 300:
                error = f"health check {cfg.probe_path} answered HTTP {resp.status_code}"
        except httpx.TimeoutException:
            error = f"health check timed out after {cfg.health_check_timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"health check failed: {describe_http_error(exc)}"
        latency_ms = (self._clock.monotonic() - start) * 1000
        state.last_check = self._clock.time()
        if error is None:
            self.record_success(provider_id, latency_ms)
        else:
            self.record_failure(provider_id, error)
        self._events.emit(
            HealthChecked(provider_id, state.status, state.last_check,
                          latency_ms if error is None else None, error)
        )

    async def _loop(self, provider_id: str) -> None:
        while True:
            state = self._states[provider_id]
            if state.enabled and self._in_flight.get(provider_id, 0) == 0:
                await self.probe(provider_id)
            # Read each round: a reload may have changed it.
            await self._clock.sleep(state.config.health_check_interval)

    def start(self) -> None:
        """Start one probe loop per provider; they run in parallel."""
        for pid in self._states:
            self.watch(pid)

    def watch(self, provider_id: str) -> None:
        """Start probing a provider (one added by a reload), the first probe at once."""
        if provider_id not in self._tasks:
            self._tasks[provider_id] = asyncio.create_task(self._loop(provider_id),
                                                           name=f"health:{provider_id}")

    def unwatch(self, provider_id: str) -> None:
        """Stop probing a provider (removed by a reload)."""
        task = self._tasks.pop(provider_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass


def describe_http_error(exc: BaseException) -> str:
    """A short human description of an httpx failure (never includes headers or keys)."""
    if isinstance(exc, httpx.ConnectError):
        # httpx says "All connection attempts failed"; the OS error underneath says why.
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, OSError) and cause.strerror:
                return f"cannot connect: {cause.strerror.lower()}"
            cause = cause.__cause__ or cause.__context__
        text = str(exc) or "connection failed"
        if "refused" in text.lower():
            return "connection refused"
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "read timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection closed by upstream ({exc})" if str(exc) else "connection closed"
    if isinstance(exc, httpx.ReadError):
        return "connection reset"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
