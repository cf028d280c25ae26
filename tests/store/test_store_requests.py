"""Reading the requests table: time ranges and usage totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lai.store.db import Store
from lai.store.recorder import Recorder
from lai.store.requests import count_requests, get_request, requests_between, usage
from tests.store.helpers import finished


async def test_time_range_and_usage_totals(store: Store) -> None:
    day1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    day2 = day1 + timedelta(hours=1)  # 00:30 the next UTC day
    rec = Recorder(store)
    await rec.start()
    rec.observe(finished(started_at=day1.timestamp(), request_id="req_a"))
    rec.observe(finished(started_at=day2.timestamp(), request_id="req_b"))
    rec.observe(finished(started_at=day2.timestamp(), status="error", key_name="other"))
    await rec.close()

    assert count_requests(store) == 3 and count_requests(store, status="error") == 1
    row = get_request(store, "req_a")
    assert row is not None and row.started_at == day1 and row.key_prefix == "lai_5f4d"
    assert get_request(store, "req_missing") is None
    assert [r.request_id for r in requests_between(store, day1, day2)] == ["req_a"]
    assert len(requests_between(store, day1)) == 3

    by_day = usage(store, day1 - timedelta(days=1))
    assert [(u.group, u.requests, u.errors) for u in by_day] == [
        ("2026-03-01", 1, 0),
        ("2026-03-02", 2, 1),
    ]
    assert by_day[0].total_tokens == 15 and round(by_day[1].cost_usd, 6) == 0.001
    by_key = {u.group: u.requests for u in usage(store, day1, by="key")}
    assert by_key == {"test-key": 2, "other": 1}
