"""What the board shows, kept from events and polls; pure Python, no widgets, no IO.

Events arrive as the dicts of ``/admin/events`` (``kind`` plus the event's fields). Rates
and latencies are bucketed by the time the event carries, not by when it arrived, so a
burst delivered late lands where it happened and the sparklines are reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lai.engine.types import InFlight, ProviderSnapshot, Queued
from lai.tui.client import provider_from_dict

BUCKET_SECONDS = 5.0
BUCKETS = 60
"""Five minutes of history in five-second buckets."""


@dataclass(slots=True)
class FlightRow:
    """A request the board lists as in flight."""

    request_id: str
    key_name: str | None
    model: str
    provider: str
    started_at: float
    tokens: int | None
    """Tokens streamed so far; None when only events are known (attached mode)."""


def queue_after(queue: list[Queued], waiting: Any) -> list[Queued]:
    """The polled ``queue`` brought up to a ``queue_changed`` event's ``waiting`` (request
    ids in serving order): requests no longer waiting are dropped and the rest take their
    new positions at once. One the poll has not listed yet appears with the next poll."""
    if not isinstance(waiting, list):
        return queue
    known = {q.request_id: q for q in queue}
    out = []
    for position, rid in enumerate(waiting, start=1):
        q = known.get(str(rid))
        if q is not None:
            out.append(dataclasses.replace(q, position=position))
    return out


@dataclass(slots=True)
class _Bucket:
    requests: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0


class BoardState:
    """Providers, requests in flight and five minutes of request rate and latency."""

    def __init__(self, bucket_seconds: float = BUCKET_SECONDS, buckets: int = BUCKETS) -> None:
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self.providers: dict[str, ProviderSnapshot] = {}
        self.flights: dict[str, FlightRow] = {}
        self._history: dict[int, _Bucket] = {}
        self._newest = 0

    # -- input

    def set_providers(self, providers: list[ProviderSnapshot]) -> None:
        """Replace every provider with a fresh poll (keeps the poll's order)."""
        self.providers = {p.id: p for p in providers}

    def set_flights(self, flights: list[InFlight]) -> None:
        """Replace the in-flight list with the engine's own (it knows tokens so far)."""
        self.flights = {
            f.request_id: FlightRow(f.request_id, f.key_name, f.model_id, f.provider_id,
                                    f.started_at, f.completion_tokens)
            for f in flights
        }

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one engine event in. Unknown kinds are ignored."""
        kind = event.get("kind")
        if kind == "snapshot":
            self.set_providers([provider_from_dict(p) for p in event.get("providers", ())])
        elif kind == "request_started":
            rid = str(event.get("request_id"))
            known = self.flights.get(rid)
            self.flights[rid] = FlightRow(
                rid, event.get("key_name"), str(event.get("model_id")),
                str(event.get("provider_id")), float(event.get("at") or 0.0),
                known.tokens if known is not None else None,
            )
            if known is None or known.provider != self.flights[rid].provider:
                # A poll that already listed it also counted its slot.
                self._bump(event.get("provider_id"), +1)
        elif kind == "failover":
            self.flights.pop(str(event.get("request_id")), None)
            self._bump(event.get("from_provider"), -1)
        elif kind == "request_finished":
            rid = str(event.get("request_id"))
            if self.flights.pop(rid, None) is not None:
                self._bump(event.get("provider_id"), -1)
            started = float(event.get("started_at") or 0.0)
            duration = float(event.get("duration_ms") or 0.0)
            bucket = self._bucket(started + duration / 1000.0)
            bucket.requests += 1
            if event.get("status") == "success":
                bucket.latency_sum += duration
                bucket.latency_n += 1
        elif kind in ("health_changed", "health_checked"):
            pid = event.get("provider_id")
            old = self.providers.get(str(pid))
            if old is not None:
                status = event.get("new") if kind == "health_changed" else event.get("status")
                self.providers[old.id] = dataclasses.replace(
                    old, status=status or old.status, last_check=event.get("at"),
                    latency_ms=event.get("latency_ms"), last_error=event.get("error"),
                )
        elif kind == "queue_changed":
            pass  # per-provider depths come with the next poll

    def _bump(self, provider_id: Any, delta: int) -> None:
        old = self.providers.get(str(provider_id))
        if old is not None:
            active = max(0, old.active_requests + delta)
            self.providers[old.id] = dataclasses.replace(old, active_requests=active)

    def _bucket(self, ts: float) -> _Bucket:
        index = int(ts // self.bucket_seconds)
        self._newest = max(self._newest, index)
        # Bounded: buckets older than the window are dropped as new ones appear.
        for old in [i for i in self._history if i <= self._newest - self.buckets]:
            del self._history[old]
        return self._history.setdefault(index, _Bucket())

    # -- output

    def rate_series(self, now: float) -> list[float]:
        """Requests per second in each bucket of the window ending at ``now``."""
        return [b.requests / self.bucket_seconds for b in self._window(now)]

    def latency_series(self, now: float) -> list[float]:
        """Mean latency (ms) of successful requests per bucket; 0 where none finished."""
        return [b.latency_sum / b.latency_n if b.latency_n else 0.0 for b in self._window(now)]

    def _window(self, now: float) -> list[_Bucket]:
        last = int(now // self.bucket_seconds)
        empty = _Bucket()
        return [self._history.get(i, empty) for i in range(last - self.buckets + 1, last + 1)]
