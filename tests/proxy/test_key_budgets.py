"""A key's budgets and rate limits through the real proxy, on an injected clock: 429
budget_exceeded naming the limit and its reset (Retry-After), the reset at the period's
end, rpm and tpm, the limit holding across a restart (counted from the store), and the
usage shown in GET /v1/stats?by=key and /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from lai.engine.clock import SystemClock
from lai.store.db import Store, open_store
from lai.store.keyquota import KeyQuota
from lai.store.keys import create_key, list_keys
from lai.store.keyusage import keys_usage
from lai.store.models import RequestRecord
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

ASK = [{"role": "user", "content": "hi"}]
# 23:59:00 UTC: a day's budget resets in 60 s
LATE = datetime(2026, 12, 2, 23, 59, 0, tzinfo=UTC).timestamp()


class ShiftClock(SystemClock):
    """The real clock moved to ``at`` (and on, on demand)."""

    def __init__(self, at: float) -> None:
        self.offset = at - time.time()

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    yield store
    store.dispose()


def client(url: str, raw: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=raw, max_retries=0,
                              http_client=httpx.AsyncClient(trust_env=False))


async def test_a_key_over_its_budget_gets_429_until_the_period_resets_even_after_restart(
        proxy_factory, upstream, keys) -> None:
    upstream.default = Behaviour(chunks=3)
    key = create_key(keys, "batch", quota=KeyQuota(budgets=(("day", 1.0),)))
    clock = ShiftClock(LATE)
    setup = ([provider("box", upstream.url)], [model("m", "box", cost_per_1k_tokens=1000.0)])
    proxy = await proxy_factory(*setup, auth=True, runtime_kwargs={"clock": clock})
    c = client(proxy.url, key.raw_key)
    first = await c.chat.completions.create(model="m", messages=ASK)  # $1 a token: over
    assert first.usage is not None and first.usage.total_tokens > 0
    with pytest.raises(openai.RateLimitError) as info:
        await c.chat.completions.create(model="m", messages=ASK)
    err = info.value
    assert err.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "$1.00/day" in err.message and "2026-12-03 00:00 UTC" in err.message
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert upstream.chat_count == 1  # refused before it reached the queue
    await c.close()
    await proxy.stop()  # the recorder writes the spend to the store

    again = await proxy_factory(*setup, auth=True, runtime_kwargs={"clock": clock})
    c = client(again.url, key.raw_key)
    with pytest.raises(openai.RateLimitError) as info:
        await c.chat.completions.create(model="m", messages=ASK)
    assert info.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    clock.offset += 120  # past midnight: a new day, a new budget
    answer = await c.chat.completions.create(model="m", messages=ASK)
    assert answer.choices[0].message.content
    await c.close()


async def test_rpm_refuses_the_request_past_the_limit_for_the_rest_of_the_minute(
        proxy_factory, upstream, keys) -> None:
    key = create_key(keys, "script", quota=KeyQuota(rpm=2))
    other = create_key(keys, "alice")
    clock = ShiftClock(LATE - 3600)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")],
                                auth=True, runtime_kwargs={"clock": clock})
    c, o = client(proxy.url, key.raw_key), client(proxy.url, other.raw_key)
    for _ in range(2):
        await c.chat.completions.create(model="m", messages=ASK)
    with pytest.raises(openai.RateLimitError) as info:
        await c.chat.completions.create(model="m", messages=ASK)
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "2 rpm" in info.value.message
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    await o.chat.completions.create(model="m", messages=ASK)  # other keys are not limited
    clock.offset += 61
    await c.chat.completions.create(model="m", messages=ASK)
    await c.close()
    await o.close()


async def test_tpm_counts_the_tokens_of_finished_requests(proxy_factory, upstream, keys
                                                          ) -> None:
    key = create_key(keys, "bulk", quota=KeyQuota(tpm=4))
    clock = ShiftClock(LATE - 3600)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")],
                                auth=True, runtime_kwargs={"clock": clock})
    c = client(proxy.url, key.raw_key)
    first = await c.chat.completions.create(model="m", messages=ASK)
    assert first.usage is not None and first.usage.total_tokens >= 4  # three words and a prompt
    with pytest.raises(openai.RateLimitError) as info:
        await c.chat.completions.create(model="m", messages=ASK)
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "4 tpm" in info.value.message
    clock.offset += 61
    await c.chat.completions.create(model="m", messages=ASK)
    await c.close()


async def test_usage_against_each_limit_is_in_stats_by_key_and_metrics(
        proxy_factory, upstream, keys) -> None:
    key = create_key(keys, "batch", quota=KeyQuota(rpm=10, budgets=(("month", 50.0),)))
    admin = create_key(keys, "ops", scopes=["admin"])
    clock = ShiftClock(LATE - 3600)
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("m", "box", cost_per_1k_tokens=10.0)],
                                auth=True, runtime_kwargs={"clock": clock})
    c = client(proxy.url, key.raw_key)
    answer = await c.chat.completions.create(model="m", messages=ASK)
    await c.close()
    assert answer.usage is not None
    spent = answer.usage.total_tokens * 10.0 / 1000
    metrics = (await proxy.http.get("/metrics")).text
    assert 'local_ai_key_limit{key="batch",limit="rpm"} 10.0' in metrics
    assert 'local_ai_key_limit_used{key="batch",limit="rpm"} 1.0' in metrics
    assert 'local_ai_key_limit{key="batch",limit="month"} 50.0' in metrics
    assert f'local_ai_key_limit_used{{key="batch",limit="month"}} {spent}' in metrics
    await proxy.runtime.recorder.flush()  # type: ignore[union-attr]
    r = await proxy.http.get("/v1/stats?by=key",
                             headers={"Authorization": f"Bearer {admin.raw_key}"})
    assert r.status_code == 200, r.text
    groups = {g["group"]: g for g in r.json()["groups"]}
    limits = {u["limit"]: u for u in groups["batch"]["limits"]}
    assert limits["rpm"]["used"] == 1 and limits["rpm"]["allowed"] == 10
    assert limits["month"]["used"] == pytest.approx(spent)
    assert limits["month"]["resets_at"] == "2027-01-01T00:00:00+00:00"


async def test_stats_by_key_shows_the_stores_figures_with_another_proxy_on_the_database(
        proxy_factory, upstream, keys) -> None:
    """Requests another lai process recorded in the same database count in the
    ``limits`` of GET /v1/stats?by=key at once, as in `lai keys list` and the usage pane
    (the proxy's own counts would see them only at their next re-read, up to 60 s on)."""
    key = create_key(keys, "batch", quota=KeyQuota(rpm=10, budgets=(("month", 50.0),)))
    admin = create_key(keys, "ops", scopes=["admin"])
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("m", "box", cost_per_1k_tokens=10.0)], auth=True)
    c = client(proxy.url, key.raw_key)
    await c.chat.completions.create(model="m", messages=ASK)  # read and counted here
    await c.close()
    await proxy.runtime.recorder.flush()  # type: ignore[union-attr]
    now = datetime.now(UTC)
    with keys.write_session() as session:  # what a second proxy's recorder writes
        for n in range(2):
            session.add(RequestRecord(
                request_id=f"req_elsewhere_{n}", key_name="batch", model_requested="m",
                model_id="m", provider_id="box", status="success", prompt_tokens=40,
                completion_tokens=10, cost_usd=1.5, started_at=now - timedelta(seconds=5)))
    r = await proxy.http.get("/v1/stats?by=key",
                             headers={"Authorization": f"Bearer {admin.raw_key}"})
    assert r.status_code == 200, r.text
    group = {g["group"]: g for g in r.json()["groups"]}["batch"]
    limits = {u["limit"]: u for u in group["limits"]}
    assert group["requests"] == 3 and limits["rpm"]["used"] == 3
    records = list_keys(keys)
    (shown,) = keys_usage(keys, records, datetime.now(UTC)).values()  # pane 5, lai keys list
    assert group["limits"] == [u.to_dict() for u in shown]
