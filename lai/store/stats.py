"""Usage statistics from ``requests`` rows: what ``lai stats`` and ``GET /v1/stats`` show.

``compute(rows, by=..., local_providers=...)`` is pure: rows in, groups out, no database.
``usage_stats(store, settings, days=..., by=...)`` loads the rows of a time window and
computes. The figures of one group:

- ``requests``, ``errors`` (rows with status ``error``);
- ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` and ``cost_usd`` of the
  requests that reached a model (``model_id`` set). A request refused before routing
  carries lai's estimate of a prompt nobody read; it is not usage and costs nothing;
- ``local_share``: of the requests served (status ``success``), the share a provider of
  type ``local`` served; None when none were served. Provider types come from the
  config; a provider no longer configured counts as not local;
- ``p50_duration_ms``, ``p95_duration_ms``: nearest-rank percentiles of the duration
  of served requests (the smallest duration with at least 50 % / 95 % of the served
  requests at or below it); None when none were served. Errors are left out: a request
  refused in a millisecond says nothing about how long answers take;
- ``failovers``: providers given up on along the way (the length of ``failover_from``
  summed over the group's requests; the metric ``local_ai_provider_failover_total``
  counts the same hops).

Groups are UTC days (``YYYY-MM-DD``), model ids, provider ids or key names; a request
without one (no model reached, no key) is in the group ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlmodel import col

from lai.config.models import Settings
from lai.store.db import Store
from lai.store.models import RequestRecord

GroupBy = Literal["day", "model", "provider", "key"]
GROUPINGS: tuple[GroupBy, ...] = ("day", "model", "provider", "key")


class StatRow(Protocol):
    """The columns of a ``requests`` row that statistics read (a RequestRecord has them)."""

    @property
    def started_at(self) -> datetime: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def provider_id(self) -> str | None: ...
    @property
    def key_name(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def failover_from(self) -> list[str] | None: ...


@dataclass(frozen=True, slots=True)
class Row:
    """A ``requests`` row reduced to what statistics read."""

    started_at: datetime
    model_id: str | None
    provider_id: str | None
    key_name: str | None
    status: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_ms: float
    failover_from: list[str] | None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """The figures of one group (or of all rows, ``group`` ``"total"``)."""

    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    local_share: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    failovers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Statistics of a time window: one entry per group, and the totals."""

    by: GroupBy
    days: int
    since: datetime
    until: datetime
    groups: tuple[GroupStats, ...]
    total: GroupStats

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "days": self.days,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "groups": [g.to_dict() for g in self.groups],
            "total": self.total.to_dict(),
        }


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def utc_day(moment: datetime) -> str:
    """The UTC date of ``moment`` as ``YYYY-MM-DD`` (a naive value is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d")


def _key(row: StatRow, by: GroupBy) -> str | None:
    if by == "day":
        return utc_day(row.started_at)
    if by == "model":
        return row.model_id
    if by == "provider":
        return row.provider_id
    return row.key_name


def summarize(group: str | None, rows: Sequence[StatRow], local: frozenset[str]) -> GroupStats:
    """The figures of ``rows`` (see the module docstring) under the name ``group``."""
    used = [r for r in rows if r.model_id is not None]
    served = [r for r in rows if r.status == "success"]
    durations = [float(r.duration_ms) for r in served]
    prompt = sum(int(r.prompt_tokens) for r in used)
    completion = sum(int(r.completion_tokens) for r in used)
    return GroupStats(
        group=group,
        requests=len(rows),
        errors=sum(1 for r in rows if r.status == "error"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        # Summing many small float costs: fsum keeps the total exact to the last digit.
        cost_usd=round(math.fsum(float(r.cost_usd) for r in used), 10),
        local_share=(
            sum(1 for r in served if r.provider_id in local) / len(served) if served else None
        ),
        p50_duration_ms=percentile(durations, 50),
        p95_duration_ms=percentile(durations, 95),
        failovers=sum(len(r.failover_from or ()) for r in rows),
    )


def compute(
    rows: Iterable[StatRow], *, by: GroupBy, local_providers: Iterable[str]
) -> tuple[list[GroupStats], GroupStats]:
    """Group ``rows`` and summarize each group and all of them.

    Days come oldest first; other groupings by requests (most first), then name, with
    the ``None`` group last. Raises ValueError for an unknown ``by``.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; use one of {', '.join(GROUPINGS)}")
    local = frozenset(local_providers)
    all_rows = list(rows)
    grouped: dict[str | None, list[StatRow]] = {}
    for row in all_rows:
        grouped.setdefault(_key(row, by), []).append(row)
    groups = [summarize(name, members, local) for name, members in grouped.items()]
    if by == "day":
        groups.sort(key=lambda g: g.group or "")
    else:
        groups.sort(key=lambda g: (g.group is None, -g.requests, g.group or ""))
    return groups, summarize("total", all_rows, local)


def window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[since, until)`` of the last ``days`` UTC days, today included (days >= 1).

    ``--days 1`` is today since 00:00 UTC, so that a per-day table has whole days.
    Raises ValueError when ``days`` < 1.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days - 1), now


def load_rows(store: Store, since: datetime, until: datetime | None = None) -> list[Row]:
    """The rows of requests started in ``[since, until)``, only the columns stats read.

    Blocking (one session); async callers use ``asyncio.to_thread``. Raises what the
    database raises (``sqlalchemy.exc.SQLAlchemyError``).
    """
    r = RequestRecord
    # Only the columns read here: error messages stay in the database.
    columns = (r.started_at, r.model_id, r.provider_id, r.key_name, r.status, r.prompt_tokens,
               r.completion_tokens, r.cost_usd, r.duration_ms, r.failover_from)
    stmt = sa.select(*(col(c) for c in columns)).where(col(r.started_at) >= since)
    if until is not None:
        stmt = stmt.where(col(r.started_at) < until)
    with store.session() as session:
        return [Row(*values) for values in session.execute(stmt).all()]


def local_provider_ids(settings: Settings) -> frozenset[str]:
    """The ids of the configured providers of type ``local``."""
    return frozenset(p.id for p in settings.providers if p.type == "local")


def usage_stats(
    store: Store, settings: Settings, *, days: int, by: GroupBy, now: datetime | None = None
) -> UsageReport:
    """Statistics of the last ``days`` UTC days (see ``window``), grouped ``by``.

    Blocking. Raises ValueError for ``days`` < 1 or an unknown ``by``, and what the
    database raises.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; use one of {', '.join(GROUPINGS)}")
    since, until = window(days, now)
    # An explicit ``now`` (a test, a report for a past moment) leaves later rows out.
    rows = load_rows(store, since, None if now is None else until)
    groups, total = compute(rows, by=by, local_providers=local_provider_ids(settings))
    return UsageReport(by=by, days=days, since=since, until=until, groups=tuple(groups),
                       total=total)
