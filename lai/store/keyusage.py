"""What each key has used against its rpm, tpm and budgets, and the check made before a
request of that key is queued.

Counted from the store, cached: the first request of a key (and every ``refresh``
seconds after) reads the ``requests`` table: requests and tokens started in the last
minute, and ``cost_usd`` summed since the start of each budget period (lai's own cost
figures: cloud prices and the electricity of local boxes). Between reads, the requests
this process admits and the RequestFinished events of the engine keep the figures
current, so a limit holds across restarts and needs no query per request. A request
counts toward rpm when it is admitted, its tokens and cost when it finishes; requests
refused by these limits count toward nothing.

Refusals are :class:`~lai.errors.RateLimitExceeded` (rpm, tpm) and
:class:`~lai.errors.BudgetExceeded` (a budget), 429 with ``Retry-After`` until the limit
lets a request through again (a budget: until its period resets).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, select

from lai.engine.clock import Clock, SystemClock
from lai.engine.events import RequestFinished
from lai.engine.quota import KeyQuota
from lai.engine.types import RequestContext
from lai.errors import BudgetExceeded, RateLimitExceeded
from lai.store.db import Store
from lai.store.keyquota import PERIODS, budget_text, period_end, period_start
from lai.store.keyvalues import KeyRecord, utc_text
from lai.store.models import RequestRecord

WINDOW = 60.0
"""Seconds of the rpm and tpm window (a sliding minute)."""
REFRESH = 60.0
"""Seconds between re-reads of a key's figures from the store (other processes' use)."""
OWN_CODES = ("rate_limit_exceeded", "budget_exceeded", "key_queue_full")
"""Error codes of requests these limits refused: they count toward nothing."""


@dataclass(slots=True)
class _Tally:
    read_at: float
    """Monotonic time of the last read from the store."""
    requests: deque[float] = field(default_factory=deque)
    """Wall times of requests in the last minute."""
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    """(wall time, tokens) of requests finished in the last minute."""
    spend: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Period -> (its start, epoch seconds; USD spent since)."""
    open: dict[str, float] = field(default_factory=dict)
    """Requests admitted and not finished (so not in the store yet): id -> wall time."""

    def prune(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW:
            self.tokens.popleft()

    def spent(self, period: str, now: datetime) -> float:
        start, usd = self.spend.get(period, (0.0, 0.0))
        return usd if start == period_start(period, now).timestamp() else 0.0

    def add_cost(self, usd: float, now: datetime) -> None:
        for period in PERIODS:
            start = period_start(period, now).timestamp()
            old_start, old = self.spend.get(period, (start, 0.0))
            self.spend[period] = (start, (old if old_start == start else 0.0) + usd)


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One limit of a key and how much of it is used now."""

    limit: str
    """``rpm``, ``tpm`` or a budget period (``day``, ``week``, ``month``)."""
    allowed: float
    used: float
    resets_at: datetime | None
    """For a budget, when its period ends."""

    def text(self) -> str:
        """``12/60 rpm`` or ``$1.20/$5.00 day``."""
        if self.limit in ("rpm", "tpm"):
            return f"{self.used:g}/{self.allowed:g} {self.limit}"
        return f"${self.used:.2f}/{budget_text(self.allowed, self.limit)}"

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "allowed": self.allowed, "used": round(self.used, 6),
                "resets_at": None if self.resets_at is None else self.resets_at.isoformat()}


def _read(store: Store, key_name: str, now: datetime, periods: tuple[str, ...]
          ) -> tuple[list[tuple[float, int]], dict[str, tuple[float, float]]]:
    """From the store: (wall time, tokens) of the key's requests in the last minute, and
    its spend since each period's start."""
    counted = sa.or_(col(RequestRecord.error_code).is_(None),
                     col(RequestRecord.error_code).not_in(OWN_CODES))
    since = now - timedelta(seconds=WINDOW)
    with store.session() as session:
        rows = session.exec(
            select(RequestRecord.started_at,
                   RequestRecord.prompt_tokens + RequestRecord.completion_tokens)
            .where(RequestRecord.key_name == key_name, RequestRecord.started_at > since,
                   counted)
        ).all()
        spend: dict[str, tuple[float, float]] = {}
        for period in periods:
            start = period_start(period, now)
            total = session.exec(
                select(func.coalesce(func.sum(RequestRecord.cost_usd), 0.0))
                .where(RequestRecord.key_name == key_name, RequestRecord.started_at >= start)
            ).one()
            spend[period] = (start.timestamp(), float(total))
    minute = sorted((started.replace(tzinfo=started.tzinfo or UTC).timestamp(), int(tokens))
                    for started, tokens in rows)
    return minute, spend


class KeyUsage:
    """Checks and counts keys' rpm, tpm and budgets; see the module docstring.

    ``clock.time()`` is the wall clock periods and windows are judged on (injectable for
    tests); ``clock.monotonic()`` times the refresh.
    """

    def __init__(self, store: Store, *, clock: Clock | None = None,
                 refresh: float = REFRESH) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.refresh = refresh
        self._tallies: dict[str, _Tally] = {}
        self._quotas: dict[str, KeyQuota] = {}
        """The limits each key came with last (for ``snapshot``)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self.reads = 0
        """Reads from the store (for tests)."""

    async def _tally(self, key_name: str) -> _Tally:
        tally = self._tallies.get(key_name)
        if tally is not None and self.clock.monotonic() - tally.read_at < self.refresh:
            return tally
        lock = self._locks.setdefault(key_name, asyncio.Lock())
        async with lock:
            tally = self._tallies.get(key_name)
            if tally is not None and self.clock.monotonic() - tally.read_at < self.refresh:
                return tally
            now = datetime.fromtimestamp(self.clock.time(), UTC)
            minute, spend = await asyncio.to_thread(_read, self.store, key_name, now, PERIODS)
            self.reads += 1
            # Requests still running have no row yet: keep counting them.
            running = dict(tally.open) if tally is not None else {}
            tally = _Tally(self.clock.monotonic(),
                           deque(sorted([t for t, _ in minute] + list(running.values()))),
                           deque((t, n) for t, n in minute if n), spend, running)
            self._tallies[key_name] = tally
            return tally

    async def admit(self, ctx: RequestContext) -> None:
        """Count a request of ``ctx``'s key, or refuse it when a limit is reached.

        Raises RateLimitExceeded (rpm or tpm) and BudgetExceeded, 429 with
        ``retry_after`` in seconds; the message names the limit and when it resets.
        A request without a key, or whose key has none of these limits, passes.
        """
        quota, name = ctx.quota, ctx.key_name
        if name is None or not quota.limits_usage:
            return
        self._quotas[name] = quota
        tally = await self._tally(name)
        wall = self.clock.time()
        now = datetime.fromtimestamp(wall, UTC)
        tally.prune(wall)
        label = f"API key '{name}'"
        for period, usd in quota.budgets:
            spent = tally.spent(period, now)
            if spent >= usd:
                resets = period_end(period, now)
                raise BudgetExceeded(
                    f"{label} has used its budget of {budget_text(usd, period)} "
                    f"(${spent:.2f} spent); it resets at {utc_text(resets)}.",
                    retry_after=max(1, math.ceil(resets.timestamp() - wall)),
                )
        if quota.rpm is not None and len(tally.requests) >= quota.rpm:
            wait = tally.requests[len(tally.requests) - quota.rpm] + WINDOW - wall
            raise RateLimitExceeded(
                f"{label} has sent {len(tally.requests)} requests in the last minute, its "
                f"limit of {quota.rpm} rpm; retry in {math.ceil(wait)} s.",
                retry_after=max(1, math.ceil(wait)),
            )
        if quota.tpm is not None:
            used = sum(n for _, n in tally.tokens)
            if used >= quota.tpm:
                left, wait = used, 0.0
                for at, n in tally.tokens:  # oldest first: when enough have aged out
                    left -= n
                    wait = at + WINDOW - wall
                    if left < quota.tpm:
                        break
                raise RateLimitExceeded(
                    f"{label} has used {used} tokens in the last minute, its limit of "
                    f"{quota.tpm} tpm; retry in {math.ceil(wait)} s.",
                    retry_after=max(1, math.ceil(wait)),
                )
        tally.requests.append(wall)
        tally.open[ctx.request_id] = wall

    def observe(self, event: object) -> None:
        """An engine event subscriber: adds a finished request's tokens and cost to its
        key's figures (keys not read yet are read, whole, on their next request)."""
        if not isinstance(event, RequestFinished):
            return
        name = event.context.key_name
        tally = self._tallies.get(name) if name is not None else None
        if tally is None:
            return
        admitted = tally.open.pop(event.context.request_id, None)
        if event.error_code in OWN_CODES:
            # Admitted, then refused by the key's own queue cap: it counts toward nothing.
            if admitted is not None and admitted in tally.requests:
                tally.requests.remove(admitted)
            return
        wall = self.clock.time()
        tokens = event.usage.total_tokens
        if tokens:
            tally.tokens.append((wall, tokens))
        if event.cost_usd:
            tally.add_cost(event.cost_usd, datetime.fromtimestamp(wall, UTC))

    def snapshot(self) -> dict[str, list[LimitUse]]:
        """Every key this process has counted, with its use of each limit now; from
        memory only (for /metrics at scrape time)."""
        wall = self.clock.time()
        now = datetime.fromtimestamp(wall, UTC)
        out = {}
        for name, quota in self._quotas.items():
            tally = self._tallies.get(name)
            if tally is None:
                continue
            tally.prune(wall)
            out[name] = usage_of(quota, len(tally.requests), sum(n for _, n in tally.tokens),
                                 {p: tally.spent(p, now) for p, _ in quota.budgets}, now)
        return out

    async def usage(self, key_name: str, quota: KeyQuota) -> list[LimitUse]:
        """How much of each of ``quota``'s rpm, tpm and budgets ``key_name`` has used now,
        as the store says (:func:`read_usage`, on this object's clock): the figures of
        ``lai keys list`` and the terminal UI, for ``GET /v1/stats?by=key``.

        Not this process's counts, which ``admit`` checks against: those see another
        process's traffic on the same database only at their next re-read (up to
        ``refresh`` s later), and count a request from its admission, while the store
        has it once the recorder wrote it, finished."""
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        return await asyncio.to_thread(read_usage, self.store, key_name, quota, now)


def usage_of(quota: KeyQuota, requests: int, tokens: int, spend: dict[str, float],
             now: datetime) -> list[LimitUse]:
    """The LimitUse of each limit in ``quota``, given what was used."""
    out = []
    if quota.rpm is not None:
        out.append(LimitUse("rpm", quota.rpm, requests, None))
    if quota.tpm is not None:
        out.append(LimitUse("tpm", quota.tpm, tokens, None))
    for period, usd in quota.budgets:
        out.append(LimitUse(period, usd, spend.get(period, 0.0), period_end(period, now)))
    return out


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A current key that has limits, with the use of each now (pane 5 draws these)."""

    name: str
    prefix: str
    quota: KeyQuota
    uses: tuple[LimitUse, ...]

    def use(self, limit: str) -> LimitUse | None:
        """The use of ``rpm``, ``tpm`` or a budget period, if the key has that limit."""
        return next((u for u in self.uses if u.limit == limit), None)


def keys_usage(store: Store, records: Sequence[KeyRecord], now: datetime
               ) -> dict[int, list[LimitUse]]:
    """The use of each current key's rpm, tpm and budgets, by key id: the figures of
    ``lai keys list``, pane 3 and pane 5 alike (use is counted per name, so a rotated
    key's predecessor gets none)."""
    return {r.id: read_usage(store, r.name, r.quota, now)
            for r in records if r.is_current and r.quota.limits_usage}


def key_limits(store: Store, records: Sequence[KeyRecord], now: datetime
               ) -> list[KeyLimits]:
    """Every current key with any limit, by name, with its use now (from
    :func:`keys_usage`)."""
    uses = keys_usage(store, records, now)
    return [KeyLimits(r.name, r.prefix, r.quota, tuple(uses.get(r.id, ())))
            for r in records if r.is_current and not r.quota.is_empty]


def read_usage(store: Store, key_name: str, quota: KeyQuota, now: datetime
               ) -> list[LimitUse]:
    """``usage`` straight from the store, without a cache (for ``lai keys list``)."""
    if not quota.limits_usage:
        return []
    minute, spend = _read(store, key_name, now, tuple(p for p, _ in quota.budgets))
    return usage_of(quota, len(minute), sum(n for _, n in minute),
                    {p: usd for p, (_, usd) in spend.items()}, now)
