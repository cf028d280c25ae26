"""Usage statistics: the pure computation, and rows read back from SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lai.config.models import Settings
from lai.store.stats import (
    GroupStats,
    Row,
    compute,
    percentile,
    usage_stats,
    utc_day,
    window,
)
from tests.store.stats_rows import (
    CONFIG_MODELS,
    CONFIG_PROVIDERS,
    EXPECTED_DAY_PERCENTILES,
    independent_figures,
    insert,
    known_rows,
    moments,
)

SETTINGS = Settings.model_validate({"providers": CONFIG_PROVIDERS, "models": CONFIG_MODELS})
LOCAL = {"box"}


def as_rows(dicts: list[dict]) -> list[Row]:
    return [
        Row(started_at=d["started_at"], model_id=d["model_id"], provider_id=d["provider_id"],
            key_name=d["key_name"], status=d["status"], prompt_tokens=d["prompt_tokens"],
            completion_tokens=d["completion_tokens"], cost_usd=d["cost_usd"],
            duration_ms=d["duration_ms"], failover_from=d["failover_from"])
        for d in dicts
    ]


def figures(g: GroupStats) -> dict:
    d = g.to_dict()
    for k in ("group", "p50_duration_ms", "p95_duration_ms"):
        d.pop(k)
    return d


def check(g: GroupStats, rows: list[dict]) -> None:
    expected = independent_figures(rows, LOCAL)
    got = figures(g)
    assert got["cost_usd"] == pytest.approx(expected.pop("cost_usd"), abs=1e-12)
    got.pop("cost_usd")
    assert got == expected


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([400, 100, 300, 200], 50) == 200
    assert percentile([400, 100, 300, 200], 95) == 400
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(1, 101)), 50) == 50


def test_window_is_whole_utc_days_up_to_now():
    now = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)
    assert window(1, now) == (datetime(2025, 3, 10, tzinfo=UTC), now)
    assert window(30, now)[0] == datetime(2025, 2, 9, tzinfo=UTC)
    with pytest.raises(ValueError):
        window(0, now)


def test_utc_day_of_an_aware_time_in_another_zone():
    from datetime import timezone

    late = datetime(2025, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert utc_day(late) == "2025-03-11"


def test_by_day_from_known_rows():
    now = datetime.now(UTC)
    dicts = [d for d in known_rows(now) if d["request_id"] != "req_stats_008"]
    groups, total = compute(as_rows(dicts), by="day", local_providers=LOCAL)
    at = moments(now)
    assert [g.group for g in groups] == [utc_day(at["yesterday"]), utc_day(at["today"])]
    for g, day in zip(groups, ("yesterday", "today"), strict=True):
        check(g, [d for d in dicts if utc_day(d["started_at"]) == g.group])
        assert (g.p50_duration_ms, g.p95_duration_ms) == EXPECTED_DAY_PERCENTILES[day]
    check(total, dicts)
    assert (total.p50_duration_ms, total.p95_duration_ms) == EXPECTED_DAY_PERCENTILES["total"]
    # The hand-made figures, once, so that the independent helper is checked too.
    assert total.requests == 7 and total.errors == 2
    assert (total.prompt_tokens, total.completion_tokens) == (169, 128)
    assert total.cost_usd == pytest.approx(0.0061)
    assert total.local_share == pytest.approx(2 / 5)
    assert total.failovers == 3


@pytest.mark.parametrize(
    ("by", "field", "order"),
    [
        ("provider", "provider_id", ["box", "cloud", "gone", None]),
        ("model", "model_id", ["small", "big", "old", None]),
        ("key", "key_name", ["agent-a", "alice", None]),
    ],
)
def test_by_provider_model_and_key(by, field, order):
    dicts = known_rows()
    groups, total = compute(as_rows(dicts), by=by, local_providers=LOCAL)
    assert [g.group for g in groups] == order
    for g in groups:
        check(g, [d for d in dicts if d[field] == g.group])
    check(total, dicts)


def test_a_group_with_nothing_served_has_no_share_or_percentiles():
    dicts = [d for d in known_rows() if d["request_id"] == "req_stats_004"]
    (group,), _total = compute(as_rows(dicts), by="model", local_providers=LOCAL)
    assert group.group is None
    assert (group.local_share, group.p50_duration_ms, group.p95_duration_ms) == (None,) * 3
    assert (group.prompt_tokens, group.cost_usd, group.errors) == (0, 0.0, 1)


def test_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="unknown grouping"):
        compute([], by="week", local_providers=())  # type: ignore[arg-type]


def test_usage_stats_reads_the_window_from_the_database(store):
    now = datetime.now(UTC)
    dicts = known_rows(now)
    insert(store, dicts)
    report = usage_stats(store, SETTINGS, days=30, by="provider", now=now)
    recent = [d for d in dicts if d["request_id"] != "req_stats_008"]
    assert report.total.requests == 7
    check(report.total, recent)
    by_group = {g.group: g for g in report.groups}
    check(by_group["cloud"], [d for d in recent if d["provider_id"] == "cloud"])
    assert by_group["cloud"].failovers == 3  # the JSON column came back as a list
    assert report.since == now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=29)

    longer = usage_stats(store, SETTINGS, days=60, by="day", now=now)
    check(longer.total, dicts)
    assert len(longer.groups) == 3
    assert longer.to_dict()["total"]["requests"] == 8
