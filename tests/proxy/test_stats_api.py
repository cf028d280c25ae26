"""GET /v1/stats through the real proxy: the recorded mix gives the figures /metrics
counted, rows written by others are read, and bad parameters are a clear 400."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from lai.store.db import open_store
from tests.harness import RunningProxy, model, provider
from tests.proxy.metrics_helpers import known_mix, scrape, series, two_providers
from tests.store.stats_rows import (
    CONFIG_MODELS,
    CONFIG_PROVIDERS,
    independent_figures,
    insert,
    known_rows,
)


async def stats(proxy: RunningProxy, **params: Any) -> dict[str, Any]:
    r = await proxy.http.get("/v1/stats", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def recorded(proxy: RunningProxy, n: int, timeout: float = 10.0) -> dict[str, Any]:
    """/v1/stats by provider once the recorder has written ``n`` requests."""
    deadline = time.monotonic() + timeout
    while True:
        report = await stats(proxy, by="provider", days=1)
        if report["total"]["requests"] >= n or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.05)


async def test_the_recorded_mix_gives_the_numbers_metrics_counted(proxy_factory,
                                                                   upstream_factory):
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    await known_mix(proxy, box)
    report = await recorded(proxy, 5)
    text = await scrape(proxy)

    total = report["total"]
    assert total["requests"] == sum(series(text, "local_ai_requests_total").values()) == 5
    assert total["errors"] == sum(series(text, "local_ai_errors_total").values()) == 1
    assert total["failovers"] == sum(
        series(text, "local_ai_provider_failover_total").values()) == 1
    tokens = series(text, "local_ai_tokens_total")
    assert total["prompt_tokens"] == sum(v for k, v in tokens.items() if ("kind", "prompt") in k)
    assert total["completion_tokens"] == sum(
        v for k, v in tokens.items() if ("kind", "completion") in k)
    assert total["cost_usd"] == pytest.approx(
        sum(series(text, "local_ai_cost_usd_total").values()), abs=1e-12)
    assert total["local_share"] == pytest.approx(2 / 4)  # box served 2 of the 4 answers
    by_provider = {g["group"]: g["requests"] for g in report["groups"]}
    assert by_provider == {"box": 2, "cloud": 2, None: 1}


async def test_rows_in_the_database_are_reported(proxy_factory, upstream_factory, tmp_path):
    box = upstream_factory()
    cloud = upstream_factory()
    providers = [provider("box", box.url), provider("cloud", cloud.url + "/v1", type="openai")]
    assert [p["id"] for p in providers] == [p["id"] for p in CONFIG_PROVIDERS]
    proxy = await proxy_factory(providers, [model(m["id"], m["provider_id"])
                                            for m in CONFIG_MODELS])
    rows = known_rows(datetime.now(UTC))
    other = open_store(proxy.settings.server.database_url)  # as `lai` in another process
    try:
        insert(other, rows)
    finally:
        other.dispose()
    report = await stats(proxy, by="key", days=60)
    assert report["by"] == "key" and report["days"] == 60
    expected = independent_figures(rows, {"box"})
    assert report["total"]["cost_usd"] == pytest.approx(expected.pop("cost_usd"))
    assert {k: report["total"][k] for k in expected} == expected
    assert [g["group"] for g in report["groups"]] == ["agent-a", "alice", None]
    default = await stats(proxy)
    assert default["by"] == "day" and default["days"] == 30
    assert default["total"]["requests"] == len(rows) - 1  # one row is 40 days old


@pytest.mark.parametrize(
    ("params", "param"),
    [({"days": "0"}, "days"), ({"days": "many"}, "days"), ({"by": "week"}, "by")],
)
async def test_bad_parameters_are_a_400(proxy_factory, upstream, params, param):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    r = await proxy.http.get("/v1/stats", params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
