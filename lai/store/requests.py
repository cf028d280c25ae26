"""Reading the ``requests`` table: rows of a time range and usage totals (``lai stats``).

Blocking functions, one session each; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, select

from lai.store.db import Store
from lai.store.models import RequestRecord

GroupBy = Literal["day", "model", "provider", "key"]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one group (a UTC day, a model, a provider or a key)."""

    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    avg_duration_ms: float | None
    avg_ttft_ms: float | None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def requests_between(
    store: Store, start: datetime, end: datetime | None = None, *, limit: int | None = None
) -> list[RequestRecord]:
    """Requests that started in ``[start, end)`` (``end`` None: up to now), oldest first.

    The rows are detached; reading their attributes needs no session.
    """
    stmt = select(RequestRecord).where(col(RequestRecord.started_at) >= start)
    if end is not None:
        stmt = stmt.where(col(RequestRecord.started_at) < end)
    stmt = stmt.order_by(col(RequestRecord.started_at), col(RequestRecord.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.session() as session:
        return list(session.exec(stmt).all())


def get_request(store: Store, request_id: str) -> RequestRecord | None:
    """The row of one request by its ``req_...`` id, None when not recorded (yet)."""
    with store.session() as session:
        return session.exec(
            select(RequestRecord).where(RequestRecord.request_id == request_id)
        ).first()


def count_requests(store: Store, *, status: str | None = None) -> int:
    """How many requests are recorded (with ``status`` ``success`` or ``error`` if given)."""
    stmt = select(sa.func.count()).select_from(RequestRecord)
    if status is not None:
        stmt = stmt.where(RequestRecord.status == status)
    with store.session() as session:
        return int(session.exec(stmt).one())


def _day(store: Store) -> sa.ColumnElement[str]:
    started = col(RequestRecord.started_at)
    if store.dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", started), "YYYY-MM-DD")
    # SQLite keeps naive UTC text, 'YYYY-MM-DD HH:MM:SS...'.
    return sa.func.substr(started, 1, 10)


def usage(
    store: Store, start: datetime, end: datetime | None = None, *, by: GroupBy = "day"
) -> list[UsageRow]:
    """Request counts, tokens, cost and mean latencies per group, for requests started in
    ``[start, end)``; days are UTC dates ``YYYY-MM-DD``. Ordered by day, else by cost
    (highest first). Raises ``ValueError`` for an unknown ``by``."""
    groups: dict[str, Any] = {
        "day": _day(store),
        "model": col(RequestRecord.model_id),
        "provider": col(RequestRecord.provider_id),
        "key": col(RequestRecord.key_name),
    }
    if by not in groups:
        raise ValueError(f"unknown grouping {by!r}")
    group = groups[by].label("grp")
    cost = sa.func.coalesce(sa.func.sum(RequestRecord.cost_usd), 0.0)
    stmt = (
        sa.select(
            group,
            sa.func.count(),
            sa.func.sum(sa.case((col(RequestRecord.status) == "error", 1), else_=0)),
            sa.func.coalesce(sa.func.sum(RequestRecord.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(RequestRecord.completion_tokens), 0),
            cost,
            sa.func.avg(RequestRecord.duration_ms),
            sa.func.avg(RequestRecord.ttft_ms),
        )
        .where(col(RequestRecord.started_at) >= start)
        .group_by(group)
        .order_by(group if by == "day" else cost.desc())
    )
    if end is not None:
        stmt = stmt.where(col(RequestRecord.started_at) < end)
    with store.session() as session:
        rows = session.execute(stmt).all()
    return [
        UsageRow(
            group=g,
            requests=int(n),
            errors=int(e or 0),
            prompt_tokens=int(p),
            completion_tokens=int(c),
            cost_usd=float(cost_),
            avg_duration_ms=None if d is None else float(d),
            avg_ttft_ms=None if t is None else float(t),
        )
        for g, n, e, p, c, cost_, d, t in rows
    ]
