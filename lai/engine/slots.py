"""Concurrency slots per provider and the priority queue of requests waiting for one.

A provider never has more than its ``max_concurrent`` requests in flight. A request names
the providers it could use, best first; it takes the first one with a free slot, or waits
in the queue (priority 0 before 1, first come first served within a priority) until any
of them frees a slot, the queue timeout passes, or the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lai.errors import CapacityExceeded


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    seq: int
    providers: frozenset[str] = field(compare=False)
    future: asyncio.Future[str] = field(compare=False)
    label: object = field(default=None, compare=False)
    """What the caller said about the request, for listing the queue."""


class SlotManager:
    """Counts requests in flight per provider and hands freed slots to waiters in order."""

    def __init__(
        self,
        capacities: dict[str, int],
        *,
        queue_max_size: int,
        on_queue_change: Callable[[int], None] | None = None,
    ) -> None:
        self.capacity = dict(capacities)
        self.in_flight = {pid: 0 for pid in capacities}
        self.queue_max_size = queue_max_size
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._on_queue_change = on_queue_change or (lambda depth: None)

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    def waiting(self) -> list[tuple[object, int, int]]:
        """The queue in serving order: (label, priority, position from 1)."""
        return [(w.label, w.priority, i) for i, w in enumerate(self._waiters, start=1)]

    def queue_depth_for(self, provider_id: str) -> int:
        """Waiters that could be served by ``provider_id``."""
        return sum(1 for w in self._waiters if provider_id in w.providers)

    def try_acquire(self, providers: Sequence[str]) -> str | None:
        """Take a slot on the first provider with room, without waiting."""
        for pid in providers:
            if self.in_flight[pid] < self.capacity.get(pid, 0):
                self.in_flight[pid] += 1
                return pid
        return None

    async def acquire(
        self, providers: Sequence[str], *, priority: int, timeout: float,
        label: object = None,
    ) -> str:
        """Take a slot on one of ``providers``, waiting up to ``timeout`` seconds;
        ``label`` is kept with the queue place for ``waiting()``.

        Raises CapacityExceeded (with ``retry_after``) when the queue is full or the
        timeout passes. When cancelled, the place in the queue (or a slot handed over at
        that very moment) is given back.
        """
        got = self.try_acquire(providers)
        if got is not None:
            return got
        retry_after = max(1, math.ceil(min(timeout, 10.0)))
        if len(self._waiters) >= self.queue_max_size:
            raise CapacityExceeded(
                f"All providers for this request are busy and the queue is full "
                f"({self.queue_max_size} waiting). Retry later.",
                retry_after=retry_after,
            )
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(priority, next(self._seq), frozenset(providers), future, label)
        bisect.insort(self._waiters, waiter)
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
            self.release(waiter.future.result())
        else:
            waiter.future.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._on_queue_change(len(self._waiters))

    def release(self, provider_id: str) -> None:
        """Free a slot, handing it straight to the first waiter that can use it (while
        the provider is within its capacity, which a reload may have lowered)."""
        self.in_flight[provider_id] -= 1
        self._hand_out(provider_id)

    def set_capacity(self, provider_id: str, capacity: int) -> None:
        """Change (or add) a provider's ``max_concurrent``; 0 takes no new requests (a
        provider removed by a reload drains). Requests in flight are never cut: a lower
        capacity applies as they finish. A higher one serves waiters at once."""
        self.capacity[provider_id] = capacity
        self.in_flight.setdefault(provider_id, 0)
        self._hand_out(provider_id)

    def _hand_out(self, provider_id: str) -> None:
        while self.in_flight[provider_id] < self.capacity.get(provider_id, 0):
            for i, waiter in enumerate(self._waiters):
                if provider_id in waiter.providers and not waiter.future.done():
                    del self._waiters[i]
                    self.in_flight[provider_id] += 1
                    waiter.future.set_result(provider_id)
                    self._on_queue_change(len(self._waiters))
                    break
            else:
                return
