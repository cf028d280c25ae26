"""Concurrency slots per provider and the fair queue of requests waiting for one.

A provider never has more than its ``max_concurrent`` requests in flight, a model with
its own ``max_concurrent`` (several models on one server) never more than that, and a key
with a ``max_concurrent`` never more than that across all providers. A request names the
providers it could use, best first; it takes the first one with room, or waits in the
queue until one has room, the queue timeout passes, or the caller is cancelled.

The queue serves priority 0 before priority 1. Within a priority it serves keys in turn
(start-time fair queueing with equal weights): each waiter gets a tag one past the later
of its key's previous tag and the tag last served, and the smallest tag goes first, ties
in arrival order. So a key's twenty queued requests take turns with another key's one:
that one is served after at most one of the twenty. Within a key it is first come first
served. Requests without a key share one turn.

With ``scheduling="fifo"`` (``server.scheduling``, the behaviour before keys took turns)
the queue serves each priority in arrival order alone, whoever's key it is; the caps on
providers, models and keys hold the same. Tags are kept in both modes, so a switch (a
config reload) re-sorts the waiters already queued and never loses one.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lai.config.models import Settings
from lai.engine.quota import KeyQuota
from lai.errors import CapacityExceeded, KeyQueueFull


def model_key(provider_id: str, model_id: str) -> str:
    """How a model is named for its own cap: ``provider/model``."""
    return f"{provider_id}/{model_id}"


def model_capacities(settings: Settings) -> dict[str, int]:
    """The per-model ``max_concurrent`` caps the config sets."""
    return {model_key(m.provider_id, m.id): m.max_concurrent
            for m in settings.models if m.max_concurrent is not None}


NO_LIMITS = KeyQuota()


@dataclass(slots=True, eq=False)
class _Waiter:
    priority: int
    tag: int
    seq: int
    key: str | None
    limits: KeyQuota
    providers: tuple[str, ...]
    models: Mapping[str, str]
    """Provider id -> the ``provider/model`` the request would run there."""
    future: asyncio.Future[str]
    label: object = None
    """What the caller said about the request, for listing the queue."""

    def fair_order(self) -> tuple[int, int, int]:
        return (self.priority, self.tag, self.seq)

    def fifo_order(self) -> tuple[int, int, int]:
        return (self.priority, self.seq, 0)


Scheduling = Literal["fair", "fifo"]


class SlotManager:
    """Counts requests in flight per provider, model and key, and hands freed slots to
    waiters in fair order."""

    def __init__(
        self,
        capacities: dict[str, int],
        *,
        queue_max_size: int,
        model_capacities: dict[str, int] | None = None,
        on_queue_change: Callable[[int], None] | None = None,
        scheduling: Scheduling = "fair",
    ) -> None:
        self.capacity = dict(capacities)
        self.in_flight = {pid: 0 for pid in capacities}
        self.model_capacity = dict(model_capacities or {})
        """``provider/model`` -> its own ``max_concurrent``; models absent are uncapped."""
        self.model_in_flight: dict[str, int] = {}
        self.key_in_flight: dict[str | None, int] = {}
        self.queue_max_size = queue_max_size
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._served_tag: dict[int, int] = {}
        """Per priority, the tag of the waiter served last (the queue's virtual time)."""
        self._last_tag: dict[tuple[int, str | None], int] = {}
        """Per (priority, key) with waiters, the tag of its newest waiter."""
        self._on_queue_change = on_queue_change or (lambda depth: None)
        self.scheduling: Scheduling = scheduling
        """``fair``: keys take turns within a priority; ``fifo``: arrival order."""
        self._order = _Waiter.fair_order if scheduling == "fair" else _Waiter.fifo_order

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    def waiting(self) -> list[tuple[object, int, int]]:
        """The queue in serving order: (label, priority, position from 1)."""
        return [(w.label, w.priority, i) for i, w in enumerate(self._waiters, start=1)]

    def queue_depth_for(self, provider_id: str) -> int:
        """Waiters that could be served by ``provider_id``."""
        return sum(1 for w in self._waiters if provider_id in w.providers)

    def ahead_for(self, provider_ids: Sequence[str], *, priority: int,
                  key: str | None) -> dict[str, int]:
        """Per provider of ``provider_ids``, the waiters that could be served by it and
        would be served before a request of ``priority`` and ``key`` queued now (one pass
        over the queue): under ``fair`` those whose tag is before the one it would get (a
        key with twenty waiting puts about one of them ahead of another key's request,
        not twenty); under ``fifo`` every waiter of its priority or a higher one. Lower
        priorities never count."""
        counts = dict.fromkeys(provider_ids, 0)
        if self.scheduling == "fair":
            tag = max(self._served_tag.get(priority, 0),
                      self._last_tag.get((priority, key), 0)) + 1
            mine: tuple[float, ...] = (priority, tag, math.inf)
        else:
            mine = (priority, math.inf, 0)
        # The queue is sorted in the order it is served: the ones ahead are a prefix.
        for w in self._waiters:
            if self._order(w) >= mine:
                break
            for pid in counts:
                if pid in w.providers:
                    counts[pid] += 1
        return counts

    def queued_for_key(self, key: str | None) -> int:
        """Waiters of ``key``."""
        return sum(1 for w in self._waiters if w.key == key)

    def try_acquire(
        self, providers: Sequence[str], *, key: str | None = None,
        limits: KeyQuota = NO_LIMITS, models: Mapping[str, str] | None = None,
    ) -> str | None:
        """Take a slot on the first provider with room (and room for the key and the
        model), without waiting."""
        pid = self._free_for(providers, key, limits, models or {})
        if pid is not None:
            self._take(pid, key, (models or {}).get(pid))
        return pid

    async def acquire(
        self, providers: Sequence[str], *, priority: int, timeout: float,
        label: object = None, key: str | None = None, limits: KeyQuota = NO_LIMITS,
        models: Mapping[str, str] | None = None,
    ) -> str:
        """Take a slot on one of ``providers``, waiting up to ``timeout`` seconds.

        ``key`` is whose turn the request takes in the queue and whose ``limits`` apply;
        ``models`` maps a provider id to the ``provider/model`` the request would run
        there (for per-model caps); ``label`` is kept with the queue place for
        ``waiting()``. Release with ``release(provider, key=, model=)`` and the same key
        and model.

        Raises KeyQueueFull (429, with ``retry_after``) when the key already has
        ``max_queued`` requests waiting, CapacityExceeded (503, with ``retry_after``)
        when the queue is full or the timeout passes. When cancelled, the place in the
        queue (or a slot handed over at that very moment) is given back.
        """
        models = dict(models or {})
        got = self.try_acquire(providers, key=key, limits=limits, models=models)
        if got is not None:
            return got
        retry_after = max(1, math.ceil(min(timeout, 10.0)))
        if limits.max_queued is not None and self.queued_for_key(key) >= limits.max_queued:
            raise KeyQueueFull(
                f"This key already has {limits.max_queued} requests waiting (its "
                f"max_queued). Retry when one has been served.",
                retry_after=retry_after,
            )
        if len(self._waiters) >= self.queue_max_size:
            raise CapacityExceeded(
                f"All providers for this request are busy and the queue is full "
                f"({self.queue_max_size} waiting). Retry later.",
                retry_after=retry_after,
            )
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        turn = (priority, key)
        tag = max(self._served_tag.get(priority, 0), self._last_tag.get(turn, 0)) + 1
        self._last_tag[turn] = tag
        waiter = _Waiter(priority, tag, next(self._seq), key, limits, tuple(providers),
                         models, future, label)
        bisect.insort(self._waiters, waiter, key=self._order)
        self._on_queue_change(len(self._waiters))
        try:
            await asyncio.wait({future}, timeout=timeout)
        except asyncio.CancelledError:
            self._forget(waiter)
            raise
        if future.done() and not future.cancelled():
            return future.result()
        self._forget(waiter)
        raise CapacityExceeded(
            f"All providers for this request stayed busy for {timeout:g} s "
            f"(server.queue_timeout). Retry later.",
            retry_after=retry_after,
        )

    def _forget(self, waiter: _Waiter) -> None:
        """Drop a waiter that stops waiting; give back a slot it was handed meanwhile."""
        if waiter.future.done() and not waiter.future.cancelled():
            pid = waiter.future.result()
            self.release(pid, key=waiter.key, model=waiter.models.get(pid))
        else:
            waiter.future.cancel()
        if waiter in self._waiters:
            self._remove(waiter)
            self._on_queue_change(len(self._waiters))

    def release(self, provider_id: str, *, key: str | None = None,
                model: str | None = None) -> None:
        """Free a slot taken for ``key`` and ``model``, handing it straight to the first
        waiter in fair order that can use it (while the provider is within its capacity,
        which a reload may have lowered)."""
        self.in_flight[provider_id] -= 1
        if model is not None and model in self.model_in_flight:
            self.model_in_flight[model] -= 1
            if not self.model_in_flight[model]:
                del self.model_in_flight[model]
        if key in self.key_in_flight:
            self.key_in_flight[key] -= 1
            if not self.key_in_flight[key]:
                del self.key_in_flight[key]
        self._dispatch()

    def set_capacity(self, provider_id: str, capacity: int) -> None:
        """Change (or add) a provider's ``max_concurrent``; 0 takes no new requests (a
        provider removed by a reload drains). Requests in flight are never cut: a lower
        capacity applies as they finish. A higher one serves waiters at once."""
        self.capacity[provider_id] = capacity
        self.in_flight.setdefault(provider_id, 0)
        self._dispatch()

    def set_model_capacities(self, capacities: dict[str, int]) -> None:
        """Replace the per-model caps (``provider/model`` -> max_concurrent), as a
        reload does; a model left out is uncapped from now on."""
        self.model_capacity = dict(capacities)
        self._dispatch()

    def set_scheduling(self, scheduling: Scheduling) -> None:
        """Serve the queue ``fair`` (keys in turn) or ``fifo`` (arrival order) from now
        on, as a reload does; the waiters already queued are put in the new order."""
        if scheduling == self.scheduling:
            return
        self.scheduling = scheduling
        self._order = _Waiter.fair_order if scheduling == "fair" else _Waiter.fifo_order
        self._waiters.sort(key=self._order)
        self._dispatch()

    # ----------------------------------------------------------------- internals

    def _free_for(self, providers: Sequence[str], key: str | None, limits: KeyQuota,
                  models: Mapping[str, str]) -> str | None:
        if limits.max_concurrent is not None and (
            self.key_in_flight.get(key, 0) >= limits.max_concurrent
        ):
            return None
        for pid in providers:
            if self.in_flight.get(pid, 0) >= self.capacity.get(pid, 0):
                continue
            model = models.get(pid)
            if model is not None and model in self.model_capacity and (
                self.model_in_flight.get(model, 0) >= self.model_capacity[model]
            ):
                continue
            return pid
        return None

    def _take(self, pid: str, key: str | None, model: str | None) -> None:
        self.in_flight[pid] += 1
        self.key_in_flight[key] = self.key_in_flight.get(key, 0) + 1
        if model is not None:
            self.model_in_flight[model] = self.model_in_flight.get(model, 0) + 1

    def _remove(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        turn = (waiter.priority, waiter.key)
        if not any((w.priority, w.key) == turn for w in self._waiters):
            del self._last_tag[turn]

    def _dispatch(self) -> None:
        """Hand slots to waiters, in queue order, while any waiter has one free.

        Taking a slot only ever takes room away, so a waiter skipped once stays
        skipped for the rest of the pass and one pass is enough.
        """
        i = 0
        while i < len(self._waiters):
            w = self._waiters[i]
            pid = None if w.future.done() else self._free_for(
                w.providers, w.key, w.limits, w.models)
            if pid is None:
                i += 1
                continue
            self._remove(w)
            self._take(pid, w.key, w.models.get(pid))
            self._served_tag[w.priority] = max(self._served_tag.get(w.priority, 0), w.tag)
            w.future.set_result(pid)
            self._on_queue_change(len(self._waiters))
