"""GET /metrics through the real proxy: exact counts after a known mix, promtool, labels,
live gauges, one registry per runtime, auth, and cost counted as the response states it."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from prometheus_client import REGISTRY

from tests.fakes.upstream import Behaviour
from tests.harness import model, provider
from tests.proxy.metrics_helpers import (
    BIG_COST,
    EP,
    HELLO,
    SMALL_COST,
    chat,
    known_mix,
    labels,
    scrape,
    series,
    two_providers,
    wait_until,
)
from tests.tools import PROMTOOL, require_tool


async def test_metrics_show_exactly_the_known_mix(proxy_factory, upstream_factory):
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    await known_mix(proxy, box)
    text = await scrape(proxy)

    assert series(text, "local_ai_requests_total") == {
        labels(endpoint=EP, model="small", provider="box", status="success"): 2,
        labels(endpoint=EP, model="big", provider="cloud", status="success"): 2,
        labels(endpoint=EP, model="unknown", provider="none", status="error"): 1,
    }
    assert series(text, "local_ai_provider_failover_total") == {
        labels(from_provider="box", to_provider="cloud"): 1,
    }
    assert series(text, "local_ai_errors_total") == {
        labels(endpoint=EP, provider="none", code="model_not_found"): 1,
    }
    assert series(text, "local_ai_request_duration_seconds_count") == {
        labels(endpoint=EP, provider="box"): 2,
        labels(endpoint=EP, provider="cloud"): 2,
        labels(endpoint=EP, provider="none"): 1,
    }
    # Time to first token exists for streamed requests only.
    assert series(text, "local_ai_time_to_first_token_seconds_count") == {
        labels(endpoint=EP, provider="box"): 1,
        labels(endpoint=EP, provider="cloud"): 1,
    }
    assert series(text, "local_ai_router_overhead_seconds_count") == {labels(endpoint=EP): 5}
    # The unknown model never reached the queue.
    assert series(text, "local_ai_queue_wait_seconds_count") == {labels(endpoint=EP): 4}
    assert series(text, "local_ai_tokens_total") == {
        labels(model="small", provider="box", kind="prompt"): 4,
        labels(model="small", provider="box", kind="completion"): 6,
        labels(model="big", provider="cloud", kind="prompt"): 4,
        labels(model="big", provider="cloud", kind="completion"): 6,
    }
    cost = series(text, "local_ai_cost_usd_total")
    assert cost.keys() == {labels(model="small", provider="box"),
                           labels(model="big", provider="cloud")}
    assert cost[labels(model="small", provider="box")] == pytest.approx(2 * SMALL_COST)
    assert cost[labels(model="big", provider="cloud")] == pytest.approx(2 * BIG_COST)

    assert series(text, "local_ai_provider_active_requests") == {
        labels(provider="box"): 0, labels(provider="cloud"): 0}
    assert series(text, "local_ai_provider_max_concurrent") == {
        labels(provider="box"): 2, labels(provider="cloud"): 3}
    assert series(text, "local_ai_provider_health") == {
        labels(provider="box"): 1, labels(provider="cloud"): 1}
    assert series(text, "local_ai_provider_info") == {
        labels(provider="box", type="local"): 1, labels(provider="cloud", type="openai"): 1}
    assert series(text, "local_ai_queue_depth") == {labels(): 0}
    assert labels() in series(text, "local_ai_recorder_backlog")


async def test_promtool_accepts_the_metrics(proxy_factory, upstream_factory):
    promtool = require_tool(*PROMTOOL)
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    await known_mix(proxy, box)
    text = await scrape(proxy)
    done = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr


async def test_labels_never_carry_client_text(proxy_factory, upstream_factory):
    proxy, _box, _cloud = await two_providers(proxy_factory, upstream_factory)
    secrets_ = ["conv-7f3a9c-private", "alice-the-user", "made-up-model-0xdeadbeef"]
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": secrets_[2], "messages": [{"role": "user", "content": "secret words"}]},
        headers={"X-Conversation-ID": secrets_[0], "X-Username": secrets_[1],
                 "Authorization": "Bearer lai_0123456789abcdef0123456789abcdef"},
    )
    assert r.status_code == 404
    ok = await proxy.http.post(
        "/v1/chat/completions", json={"model": "small", "messages": HELLO},
        headers={"X-Conversation-ID": secrets_[0], "X-Username": secrets_[1]})
    assert ok.status_code == 200
    text = await scrape(proxy)
    for leaked in [*secrets_, "secret words", "lai_0123", "hello there"]:
        assert leaked not in text
    assert series(text, "local_ai_requests_total")[
        labels(endpoint=EP, model="unknown", provider="none", status="error")] == 1


async def test_a_stream_cut_after_its_first_byte_is_an_error_of_its_provider(
    proxy_factory, upstream_factory
):
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    box.script(Behaviour(mode="cut", cut_after=1, chunks=4))
    r = await chat(proxy, "small", stream=True)
    assert r.status_code == 200  # the stream had started; it ends with an error event
    text = await scrape(proxy)
    assert series(text, "local_ai_requests_total") == {
        labels(endpoint=EP, model="small", provider="box", status="error"): 1}
    assert series(text, "local_ai_errors_total") == {
        labels(endpoint=EP, provider="box", code="upstream_error"): 1}
    assert series(text, "local_ai_provider_failover_total") == {}


async def test_live_gauges_show_in_flight_queue_and_health(proxy_factory, upstream_factory):
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory,
                                             cloud_fallback=False)
    box.default = Behaviour(first_delay=0.5)
    # max_concurrent 2 on the box: two are served, the third waits in the queue.
    calls = [asyncio.create_task(chat(proxy, "small")) for _ in range(3)]
    await wait_until(lambda: proxy.engine.slots.queue_depth == 1)
    text = await scrape(proxy)
    assert series(text, "local_ai_provider_active_requests")[labels(provider="box")] == 2
    assert series(text, "local_ai_provider_queue_depth")[labels(provider="box")] == 1
    assert series(text, "local_ai_queue_depth") == {labels(): 1}
    assert all(r.status_code == 200 for r in await asyncio.gather(*calls))
    text = await scrape(proxy)
    assert series(text, "local_ai_provider_active_requests")[labels(provider="box")] == 0
    assert series(text, "local_ai_queue_depth") == {labels(): 0}
    # The third request waited for a slot; its wait is in the histogram's sum.
    assert series(text, "local_ai_queue_wait_seconds_sum")[labels(endpoint=EP)] >= 0.3

    r = await proxy.http.post("/admin/providers/cloud/disable")
    assert r.status_code == 200
    text = await scrape(proxy)
    assert series(text, "local_ai_provider_health") == {
        labels(provider="box"): 1, labels(provider="cloud"): 0}
    assert series(text, "local_ai_provider_enabled") == {
        labels(provider="box"): 1, labels(provider="cloud"): 0}


async def test_each_runtime_has_its_own_registry(proxy_factory, upstream_factory):
    first, _box, _cloud = await two_providers(proxy_factory, upstream_factory)
    second, _box2, _cloud2 = await two_providers(proxy_factory, upstream_factory)
    assert (await chat(first, "small")).status_code == 200
    assert series(await scrape(first), "local_ai_requests_total") == {
        labels(endpoint=EP, model="small", provider="box", status="success"): 1}
    assert series(await scrape(second), "local_ai_requests_total") == {}
    assert not [m for m in REGISTRY.collect() if m.name.startswith("local_ai_")]


async def test_energy_cost_is_counted_as_the_response_states_it(proxy_factory, upstream_factory):
    box = upstream_factory()
    box.default = Behaviour(delay=0.2)
    # 3.6 MW at $1 per kWh is $1 a second: the energy cost is the serving time in dollars.
    proxy = await proxy_factory(
        [provider("box", box.url, power_watts=3_600_000)],
        [model("small", "box", cost_per_1k_tokens=0.0)],
        electricity_rate_kwh=1.0,
    )
    r = await chat(proxy, "small")
    assert r.status_code == 200
    stated = r.json()["cost_usd"]
    assert 0.2 <= stated < 5.0
    counted = series(await scrape(proxy), "local_ai_cost_usd_total")
    assert counted == {labels(model="small", provider="box"): pytest.approx(stated, abs=1e-9)}


async def test_metrics_are_open_unless_metrics_auth(proxy_factory, upstream_factory):
    box = upstream_factory()
    open_proxy = await proxy_factory([provider("box", box.url)], [model("small", "box")],
                                     auth=True)
    assert (await open_proxy.http.get("/metrics")).status_code == 200
    closed = await proxy_factory([provider("box", box.url)], [model("small", "box")],
                                 auth=True, metrics_auth=True)
    r = await closed.http.get("/metrics")
    # 401 without a key; 503 when the runtime cannot check keys at all (fails closed).
    assert r.status_code in (401, 503)
    assert r.json()["error"]["type"] in ("authentication_error", "service_unavailable")


async def test_recorder_backlog_and_failed_writes_come_from_the_runtime(tmp_path):
    from lai.proxy.metrics import ProxyMetrics
    from lai.runtime import build_runtime
    from tests.harness import make_settings

    class Recorder:
        backlog = 7
        failed_writes = 2

    runtime = build_runtime(make_settings(tmp_path, [], []), store=False)
    try:
        text = ProxyMetrics(runtime).render().decode()
        assert series(text, "local_ai_recorder_backlog") == {labels(): 0}
        runtime.recorder = Recorder()  # type: ignore[assignment]
        text = ProxyMetrics(runtime).render().decode()
        assert series(text, "local_ai_recorder_backlog") == {labels(): 7}
        assert series(text, "local_ai_recorder_failed_writes_total") == {labels(): 2}
    finally:
        await runtime.close()


async def test_retry_back_off_is_not_counted_as_router_overhead(proxy_factory, upstream_factory):
    from lai.engine.events import RequestFinished

    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    proxy.engine.retry_delay = 0.3
    finished: list[RequestFinished] = []
    proxy.engine.events.subscribe(
        lambda e: finished.append(e) if isinstance(e, RequestFinished) else None)
    box.script(Behaviour(mode="status", status=500), Behaviour(mode="status", status=500))
    assert (await chat(proxy, "auto")).status_code == 200
    (event,) = finished
    # The 0.3 s wait before the retry on the box is upstream time, not lai's own.
    assert event.upstream_ms >= 300
    own_s = (event.duration_ms - event.upstream_ms - event.queue_ms) / 1000
    text = await scrape(proxy)
    assert series(text, "local_ai_router_overhead_seconds_sum") == {
        labels(endpoint=EP): pytest.approx(max(0.0, own_s), abs=1e-9)}


async def test_database_size_gauge_follows_the_store(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    from lai.store.space import file_size

    text = await scrape(proxy)
    (size,) = series(text, "local_ai_database_size_bytes").values()
    assert proxy.runtime.store is not None
    on_disk = file_size(proxy.runtime.store)  # two stat calls: the file and its WAL
    assert on_disk is not None and on_disk > 0
    assert abs(size - on_disk) <= 64 * 1024  # the recorder may have written since


async def test_a_database_that_is_down_leaves_out_the_size_not_the_scrape(tmp_path, caplog):
    from lai.proxy.metrics import ProxyMetrics
    from lai.runtime import build_runtime
    from tests.harness import make_settings

    settings = make_settings(tmp_path, [], [],
                             database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    runtime = build_runtime(settings)  # not started: nothing migrates
    try:
        metrics = ProxyMetrics(runtime)
        await metrics.refresh_database_size(wait=10)
        text = metrics.render().decode()
        assert "local_ai_database_size_bytes" not in text
        assert "local_ai_queue_depth" in text  # the rest of the scrape is there
        assert "could not measure the database size" in caplog.text
    finally:
        await runtime.close()
