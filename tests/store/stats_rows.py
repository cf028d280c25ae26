"""A known set of ``requests`` rows for the statistics tests, with the figures they give.

Two providers are configured: ``box`` (local) and ``cloud`` (openai); ``gone`` was
removed from the config since it served a request. Days are UTC; "today" rows lie
between midnight and now, so the set works at any hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lai.store.db import Store
from lai.store.models import RequestRecord

CONFIG_PROVIDERS = [
    {"id": "box", "type": "local", "endpoint": "http://127.0.0.1:9"},
    {"id": "cloud", "type": "openai", "endpoint": "http://127.0.0.1:9/v1"},
]
CONFIG_MODELS = [
    {"id": "small", "provider_id": "box"},
    {"id": "big", "provider_id": "cloud"},
]


def moments(now: datetime | None = None) -> dict[str, datetime]:
    """``today``, ``yesterday`` and ``old`` (40 days back) started_at values."""
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "today": midnight + (now - midnight) / 2,
        "yesterday": midnight - timedelta(hours=12),
        "old": midnight - timedelta(days=39, hours=12),
    }


def known_rows(now: datetime | None = None) -> list[dict[str, Any]]:
    """The rows, as RequestRecord fields. Durations are chosen so that nearest-rank
    percentiles are easy to state by hand (see ``EXPECTED_*``)."""
    at = moments(now)

    def row(n: int, when: str, model: str | None, prov: str | None, key: str | None,
            status: str, prompt: int, completion: int, cost: float, duration: float,
            failover_from: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "request_id": f"req_stats_{n:03d}", "started_at": at[when],
            "model_requested": model or "no-such-model", "model_id": model,
            "provider_id": prov, "key_name": key, "status": status,
            "http_status": 200 if status == "success" else 502,
            "prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost,
            "duration_ms": duration, "failover_from": failover_from, **extra,
        }

    return [
        row(1, "today", "small", "box", "agent-a", "success", 10, 20, 0.001, 100),
        row(2, "today", "small", "box", "agent-a", "success", 5, 5, 0.0005, 300, streaming=True),
        row(3, "today", "big", "cloud", "alice", "success", 100, 50, 0.0025, 200, ["box"]),
        # Refused before routing: lai's prompt estimate is not usage.
        row(4, "today", None, None, "alice", "error", 7, 0, 0.0, 1,
            error_code="model_not_found", http_status=404),
        # A stream cut half-way: its tokens were used, its duration is not an answer time.
        row(5, "today", "small", "box", None, "error", 3, 2, 0.0001, 400,
            error_code="upstream_error"),
        row(6, "yesterday", "big", "cloud", "alice", "success", 50, 50, 0.002, 1000,
            ["box", "gone"]),
        row(7, "yesterday", "old", "gone", "agent-a", "success", 1, 1, 0.0, 50),
        row(8, "old", "small", "box", "agent-a", "success", 1000, 1000, 1.0, 5000),
    ]


EXPECTED_DAY_PERCENTILES = {
    # served durations: yesterday [50, 1000]; today [100, 200, 300]
    "yesterday": (50.0, 1000.0),
    "today": (200.0, 300.0),
    # last 30 days: [50, 100, 200, 300, 1000]
    "total": (200.0, 1000.0),
}


def insert(store: Store, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` into the (migrated) ``requests`` table."""
    with store.write_session() as session:
        for values in rows:
            session.add(RequestRecord(**values))


def independent_figures(rows: list[dict[str, Any]], local: set[str]) -> dict[str, Any]:
    """Counts, sums and local share of ``rows``, written out plainly (no lai code)."""
    used = [r for r in rows if r["model_id"] is not None]
    served = [r for r in rows if r["status"] == "success"]
    prompt = sum(r["prompt_tokens"] for r in used)
    completion = sum(r["completion_tokens"] for r in used)
    return {
        "requests": len(rows),
        "errors": len([r for r in rows if r["status"] == "error"]),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_usd": sum(r["cost_usd"] for r in used),
        "local_share": (len([r for r in served if r["provider_id"] in local]) / len(served)
                        if served else None),
        "failovers": sum(len(r["failover_from"] or []) for r in rows),
    }
