"""Provider health: the state machine, the probes, and the background loop.

States: ``unknown`` while there is no signal yet (every enabled provider is probed at
start-up); a passing probe is ``healthy``, or ``degraded`` when it took longer than 5 s.
A failure makes ``unhealthy`` at once when the provider cannot be reached at all
(connection refused, no route) or had no success yet; otherwise after 3 consecutive
failures (probes or live requests). One success restores it. An unhealthy provider is
probed again after 1 s, then 2, 4, ... up to ``health_check_interval``, so a restarted
server is back within seconds. A disabled provider shows ``disabled`` whatever its last
health and is not probed; enabling it probes it at once. Probes are skipped while a
healthy provider has requests in flight: the live traffic already tells whether it is
alive, and some servers (llama.cpp) serialise a probe behind a generation or cut a
stream short for it.

A provider with a ``server`` hint is also asked what it has loaded and how busy it is
(``lai.engine.discovery``) right after each passing probe, and, for the kinds whose
endpoint does not wait behind a generation, at each interval while it is busy too. What
it answers never changes the provider's health; a failing probe makes it unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from lai.config.models import ProviderConfig
from lai.engine import discovery
from lai.engine.adapters import adapter_for
from lai.engine.clock import Clock
from lai.engine.events import EventBus, HealthChanged, HealthChecked
from lai.engine.redact import Redactor
from lai.engine.types import ProviderStatus, ServerLoad

log = logging.getLogger("lai.engine.health")

DEGRADED_LATENCY_S = 5.0
UNHEALTHY_AFTER = 3
REPROBE_FIRST_S = 1.0
"""Seconds before an unhealthy provider is probed again; doubles up to the interval."""
REFUSED = "connection refused"
CANNOT_CONNECT = "cannot connect: "
"""How :func:`describe_http_error` starts a failure that reached no server at all."""


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
    loaded: frozenset[str] | None = None
    """The names the server reports loaded (``lai.engine.discovery``); None: not known
    (no ``server`` hint, no poll yet, or the last one failed or made no sense)."""
    load: ServerLoad | None = None
    """How busy the server says it is; None: not known."""
    loaded_at: float | None = None
    """Monotonic time of the poll that set ``loaded`` and ``load``."""

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
        self._wake = {pid: asyncio.Event() for pid in states}
        """Set when live traffic makes a provider unhealthy (its loop starts re-probing)
        or when it is enabled (its loop probes now, if named in ``_probe_now``)."""
        self._probe_now: set[str] = set()

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

    def record_failure(self, provider_id: str, error: str, *,
                       unreachable: bool | None = None) -> None:
        """A probe failed or a live request failed because of the provider.

        ``unreachable`` (default: ``error`` is :func:`describe_http_error`'s "connection
        refused" or "cannot connect: ...") makes it unhealthy at once, as does a failure
        before any success; other failures count toward ``UNHEALTHY_AFTER``.
        """
        # last_error is shown by /v1/providers and sent in events: no provider's key in
        # it. Built from the states each time, so providers a reload added count too.
        error = Redactor.for_providers(s.config for s in self._states.values())(error)
        state = self._states[provider_id]
        state.consecutive_failures += 1
        state.last_error = error
        if unreachable is None:
            unreachable = is_unreachable(error)
        if (unreachable or state.health == "unknown"
                or state.consecutive_failures >= UNHEALTHY_AFTER):
            if state.health != "unhealthy":
                self._wake.setdefault(provider_id, asyncio.Event()).set()
            self._set(state, "unhealthy", error)

    def notify_toggle(self, provider_id: str, old: ProviderStatus) -> None:
        """A provider was enabled or disabled; an enabled one is probed at once."""
        state = self._states[provider_id]
        if old == "disabled" and state.enabled:
            self._probe_now.add(provider_id)
            self._wake.setdefault(provider_id, asyncio.Event()).set()
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
            busy = self._in_flight.get(provider_id, 0) > 0
            if discovery.may_poll(cfg, busy):
                await self.discover(provider_id)
        else:
            self.record_failure(provider_id, error)
            state.loaded = state.load = None  # it did not answer: what it holds is unknown
        self._events.emit(
            HealthChecked(provider_id, state.status, state.last_check,
                          latency_ms if error is None else None, error)
        )

    async def discover(self, provider_id: str) -> None:
        """Ask the provider's server what it has loaded and how busy it is; sets the
        state's ``loaded`` and ``load``. Never raises; does not touch health."""
        state = self._states[provider_id]
        cfg = state.config
        _, headers = adapter_for(cfg).probe(cfg)
        found = await discovery.poll(self._client, cfg, headers)
        if (state.config.server, state.config.endpoint) != (cfg.server, cfg.endpoint):
            return  # a reload moved it meanwhile: the answer is the old server's
        state.loaded, state.load = found.loaded, found.load
        state.loaded_at = self._clock.monotonic()

    async def _loop(self, provider_id: str) -> None:
        backoff = 0.0
        probe = True  # at start-up (or when a reload adds it): a signal at once
        while True:
            # Read each round: a reload may have replaced the provider's config.
            state = self._states[provider_id]
            interval = state.config.health_check_interval
            busy = self._in_flight.get(provider_id, 0) > 0
            if probe and state.enabled:
                if not busy or state.health == "unhealthy":
                    await self.probe(provider_id)
                elif discovery.may_poll(state.config, busy):
                    await self.discover(provider_id)  # the load figures matter most now
            if state.health == "unhealthy" and state.enabled:
                backoff = min(interval, backoff * 2 if backoff else REPROBE_FIRST_S)
                wait = backoff
            else:
                backoff, wait = 0.0, interval
            woken = await self._pause(provider_id, wait)
            # Woken: just enabled (probe now), or live traffic found it down just now
            # (the first re-probe is 1 s away).
            probe = not woken or provider_id in self._probe_now
            self._probe_now.discard(provider_id)
            if woken:
                backoff = 0.0

    async def _pause(self, provider_id: str, seconds: float) -> bool:
        """Sleep ``seconds`` on the engine's clock; True when woken early."""
        wake = self._wake.setdefault(provider_id, asyncio.Event())
        if provider_id not in self._probe_now:  # an enable meanwhile must not be lost
            wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            done, _ = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
        return waiter in done and sleeper not in done

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


def is_unreachable(error: str) -> bool:
    """Whether ``error`` (from :func:`describe_http_error`) says no server answered at
    all: nothing listens on the port, or the host cannot be reached."""
    return error == REFUSED or error.startswith(CANNOT_CONNECT)


def auto_status(states: Iterable[ProviderState], *, cloud_fallback: bool) -> ProviderStatus:
    """The status of ``auto`` from the providers it may route to: ``healthy`` (or
    ``degraded``) when one of them is, ``unknown`` while none has a signal yet,
    ``unhealthy`` when all have failed or are disabled."""
    seen = {s.status for s in states if s.enabled and (cloud_fallback or not s.config.is_cloud)}
    for status in ("healthy", "degraded", "unknown"):
        if status in seen:
            return status  # type: ignore[return-value]
    return "unhealthy"


def describe_http_error(exc: BaseException) -> str:
    """A short human description of an httpx failure (never includes headers or keys)."""
    if isinstance(exc, httpx.ConnectError):
        # httpx says "All connection attempts failed"; the OS error underneath says why.
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return REFUSED
            if isinstance(cause, OSError) and cause.strerror:
                return f"{CANNOT_CONNECT}{cause.strerror.lower()}"
            cause = cause.__cause__ or cause.__context__
        text = str(exc) or "connection failed"
        if "refused" in text.lower():
            return REFUSED
        return f"{CANNOT_CONNECT}{text}"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "read timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection closed by upstream ({exc})" if str(exc) else "connection closed"
    if isinstance(exc, httpx.ReadError):
        return "connection reset"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
