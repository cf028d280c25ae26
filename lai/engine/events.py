"""Engine events and the bus that carries them to observers (recorder, metrics, TUI board).

Observers subscribe a plain callable; ``emit`` calls each one synchronously and in order,
so an observer must only hand the event on (put it in its own queue) and never block.
An observer that raises is logged and kept; the request path never sees the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lai.engine.types import ProviderStatus, RequestContext, Usage

log = logging.getLogger("lai.engine")


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """A request got a slot on a provider (once per attempt; failover emits it again)."""

    context: RequestContext
    model_requested: str
    model_id: str
    provider_id: str
    streaming: bool
    at: float
    queue_ms: float
    kind: Literal["request_started"] = "request_started"


@dataclass(frozen=True, slots=True)
class Failover:
    """An attempt on ``from_provider`` failed and the request moves on."""

    context: RequestContext
    from_provider: str
    to_provider: str | None
    reason: str
    at: float
    kind: Literal["failover"] = "failover"


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """The end of a request, success or not: everything the store keeps in ``requests``."""

    context: RequestContext
    model_requested: str
    model_id: str | None
    provider_id: str | None
    failover_from: tuple[str, ...]
    """Providers tried and given up on before the one that answered (or failed last)."""
    streaming: bool
    status: Literal["success", "error"]
    http_status: int
    error_code: str | None
    error_message: str | None
    usage: Usage
    cost_usd: float
    started_at: float
    """Wall-clock epoch seconds when the engine took the request."""
    queue_ms: float
    ttft_ms: float | None
    duration_ms: float
    upstream_ms: float
    """Time spent waiting on upstreams; duration_ms - upstream_ms - queue_ms is lai's own."""
    request_messages: tuple[dict[str, Any], ...]
    """The client's messages, as it sent them (image_refs kept)."""
    response_message: dict[str, Any] | None
    """The assistant message: role, content, tool_calls when present."""
    finish_reason: str | None = None
    estimate_ms: float | None = None
    """The expected time to first token on the provider that served it, when the
    scheduling weighed candidates (``lai.engine.estimate``)."""
    route_reason: str | None = None
    """Why that provider: its estimate's parts and the choice's rules that applied."""
    kind: Literal["request_finished"] = "request_finished"


@dataclass(frozen=True, slots=True)
class HealthChanged:
    provider_id: str
    old: ProviderStatus
    new: ProviderStatus
    at: float
    latency_ms: float | None
    error: str | None
    kind: Literal["health_changed"] = "health_changed"


@dataclass(frozen=True, slots=True)
class HealthChecked:
    """A probe ran (whether or not the status changed)."""

    provider_id: str
    status: ProviderStatus
    at: float
    latency_ms: float | None
    error: str | None
    kind: Literal["health_checked"] = "health_checked"


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """A request joined or left the queue; ``waiting`` is every waiting request's id in
    the order they will be served (position 1 first), so a live view can show each one's
    place without asking ``GET /admin/queue``."""

    depth: int
    at: float
    waiting: tuple[str, ...] = ()
    kind: Literal["queue_changed"] = "queue_changed"


@dataclass(frozen=True, slots=True)
class ConfigReloaded:
    """The config file was read again: applied (``ok``) with ``changes``, or refused with
    ``error`` (the old config keeps serving)."""

    ok: bool
    changes: tuple[str, ...]
    warnings: tuple[str, ...]
    error: str | None
    at: float
    kind: Literal["config_reloaded"] = "config_reloaded"


Event = (RequestStarted | Failover | RequestFinished | HealthChanged | HealthChecked
         | QueueChanged | ConfigReloaded)
Observer = Callable[[Event], None]


def event_dict(event: Event) -> dict[str, Any]:
    """An event as JSON-ready data for live views (``/admin/events``, the TUI board):
    the request's id, key name and conversation instead of its context, and no message
    bodies (those are the store's)."""
    data: dict[str, Any] = asdict(event)
    data.pop("request_messages", None)
    data.pop("response_message", None)
    ctx = data.pop("context", None)
    if ctx:
        data["request_id"] = ctx["request_id"]
        data["key_name"] = ctx["key_name"]
        data["conversation_id"] = ctx["conversation_id"]
    return data


@dataclass(slots=True)
class EventBus:
    """Fans engine events out to observers. One per engine; nothing process-wide."""

    _observers: list[Observer] = field(default_factory=list)
    _enders: set[Callable[[], None]] = field(default_factory=set)
    """One per live ``follow``: ends it (see ``end_streams``)."""
    _ended: bool = False

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Add an observer; returns a function that removes it again."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def end_streams(self) -> None:
        """End every ``follow`` of this bus now, and any started later (at shutdown a
        live view must not hold the server open). Observers keep getting events."""
        self._ended = True
        enders = tuple(self._enders)
        self._enders.clear()
        for end in enders:
            end()

    def emit(self, event: Event) -> None:
        for observer in tuple(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must not break a request
                log.exception("event observer %r failed on %s", observer, event.kind)


async def follow(
    bus: EventBus,
    snapshot: Callable[[], dict[str, Any]],
    *,
    size: int = 1000,
    idle: float | None = None,
) -> AsyncIterator[dict[str, Any] | None]:
    """Live view of ``bus``: ``snapshot()`` (taken once subscribed, so nothing falls in
    between), then every event as ``event_dict``; None after ``idle`` seconds without one
    (for keep-alives). A slow reader loses the oldest events, never memory: it gets
    ``{"kind": "dropped", "count": N}`` before the events that follow the gap. It ends
    (returns) at once when ``bus.end_streams()`` is called."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue(size + 1)  # + 1: room for the end
    dropped = 0
    loop = asyncio.get_running_loop()

    def observe(event: Event) -> None:
        nonlocal dropped
        if queue.qsize() >= size:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            dropped += 1
        queue.put_nowait(event)

    def end() -> None:
        # end_streams may be called from another thread than this loop's.
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            queue.put_nowait(None)  # None ends the stream
        elif not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, None)

    if bus._ended:
        return
    unsubscribe = bus.subscribe(observe)
    bus._enders.add(end)
    try:
        yield snapshot()
        while True:
            try:
                async with asyncio.timeout(idle):
                    event = await queue.get()
            except TimeoutError:
                yield None
                continue
            if event is None:
                return
            if dropped:
                yield {"kind": "dropped", "count": dropped}
                dropped = 0
            yield event_dict(event)
    finally:
        bus._enders.discard(end)
        unsubscribe()

