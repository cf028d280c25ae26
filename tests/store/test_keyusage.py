"""A key's use of its rpm, tpm and budgets, counted from the ``requests`` table (SQLite
and PostgreSQL) on a fake clock: periods, the sliding minute, requests refused by the
limits counting toward nothing, the cache, and ``lai keys list``'s LIMITS column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lai.commands.keys import format_table
from lai.engine.quota import KeyQuota
from lai.engine.types import RequestContext
from lai.errors import BudgetExceeded, RateLimitExceeded
from lai.store.db import Store
from lai.store.keyquota import parse_budget, period_end, period_start
from lai.store.keys import create_key, list_keys
from lai.store.keyusage import KeyUsage, read_usage
from lai.store.models import RequestRecord

NOW = datetime(2026, 12, 2, 23, 59, 30, tzinfo=UTC)  # a Wednesday


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.wall = at.timestamp()
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def add_rows(store: Store, *rows: tuple[str, datetime, int, float, str | None]) -> None:
    with store.write_session() as session:
        for i, (key, at, tokens, cost, code) in enumerate(rows):
            session.add(RequestRecord(
                request_id=f"req_{key}_{i}_{at.timestamp()}", key_name=key,
                model_requested="m", status="error" if code else "success",
                error_code=code, prompt_tokens=tokens, cost_usd=cost, started_at=at))


def test_periods_are_utc_calendar_periods() -> None:
    assert period_start("day", NOW) == datetime(2026, 12, 2, tzinfo=UTC)
    assert period_start("week", NOW) == datetime(2026, 11, 30, tzinfo=UTC)  # Monday
    assert period_end("month", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_budget("$5.00/Day") == ("day", 5.0)
    assert parse_budget("none/month") == ("month", None)
    for bad in ("5", "5/year", "0/day", "nan/day", "x/day"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_spend_and_the_minute_are_read_from_the_store(store: Store) -> None:
    quota = KeyQuota(rpm=10, tpm=1000, budgets=(("day", 5.0), ("month", 50.0)))
    add_rows(store,
             ("k", NOW - timedelta(seconds=10), 100, 1.0, None),
             ("k", NOW - timedelta(seconds=30), 50, 0.5, "upstream_error"),
             ("k", NOW - timedelta(seconds=20), 0, 0.0, "rate_limit_exceeded"),  # refused
             ("k", NOW - timedelta(minutes=5), 70, 2.0, None),
             ("k", NOW - timedelta(days=1), 10, 10.0, None),  # yesterday: this month only
             ("k", NOW - timedelta(days=40), 10, 99.0, None),  # last month
             ("other", NOW - timedelta(seconds=5), 999, 9.0, None))
    uses = {u.limit: u for u in read_usage(store, "k", quota, NOW)}
    assert uses["rpm"].used == 2  # the refused request counts toward nothing
    assert uses["tpm"].used == 150
    assert uses["day"].used == pytest.approx(3.5)
    assert uses["month"].used == pytest.approx(13.5)
    assert uses["day"].resets_at == datetime(2026, 12, 3, tzinfo=UTC)


async def test_a_budget_refuses_until_its_period_ends_and_the_store_is_read_once(
        store: Store) -> None:
    clock = FakeClock(NOW)
    usage = KeyUsage(store, clock=clock)
    add_rows(store, ("k", NOW - timedelta(hours=1), 10, 5.0, None))
    ctx = RequestContext(key_name="k", quota=KeyQuota(budgets=(("day", 5.0),)))
    with pytest.raises(BudgetExceeded) as info:
        await usage.admit(ctx)
    assert info.value.retry_after == 30  # to midnight UTC
    assert "$5.00/day" in info.value.message and "2026-12-03 00:00 UTC" in info.value.message
    await clock.sleep(31)
    await usage.admit(ctx)  # a new day
    await usage.admit(ctx)
    assert usage.reads == 1


async def test_rpm_slides_over_the_last_minute(store: Store) -> None:
    clock = FakeClock(NOW)
    usage = KeyUsage(store, clock=clock)
    ctx = RequestContext(key_name="k", quota=KeyQuota(rpm=2))
    await usage.admit(ctx)
    await clock.sleep(20)
    await usage.admit(ctx)
    with pytest.raises(RateLimitExceeded) as info:
        await usage.admit(ctx)
    assert info.value.retry_after == 40  # when the first one leaves the minute
    await clock.sleep(41)
    await usage.admit(ctx)
    # a minute on, the figures were read again from the store; the requests admitted
    # but not finished (no row yet) still count
    assert usage.reads == 2
    with pytest.raises(RateLimitExceeded):
        await usage.admit(ctx)
    # a key without these limits, and a request without a key, are never counted
    await usage.admit(RequestContext(key_name="free"))
    await usage.admit(RequestContext())
    assert usage.reads == 2


def test_keys_list_shows_each_limit_with_its_use(store: Store) -> None:
    create_key(store, "batch", quota=KeyQuota(max_concurrent=2, rpm=60,
                                              budgets=(("day", 5.0),)), now=NOW)
    create_key(store, "free", now=NOW)
    add_rows(store, ("batch", NOW - timedelta(seconds=5), 10, 1.25, None))
    records = list_keys(store)
    uses = {r.id: read_usage(store, r.name, r.quota, NOW) for r in records}
    table = format_table(records, NOW, uses)
    header, *lines = table.splitlines()
    assert "LIMITS (USED)" in header
    batch = next(line for line in lines if " batch " in line)
    assert batch.endswith("max 2 in flight, 1/60 rpm, $1.25/$5.00/day")
    assert next(line for line in lines if " free " in line).endswith(" -")
