"""/v1/models, /v1/providers, /health, the admin toggles, warm models and health checks."""

from __future__ import annotations

import asyncio

from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


async def test_models_lists_auto_and_each_model_with_status_and_warmth(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("a", "box", is_default=True), model("b", "box")])
    r = await proxy.http.get("/v1/models")
    body = r.json()
    assert body["object"] == "list" and body["has_more"] is False
    ids = [m["id"] for m in body["data"]]
    assert ids == ["auto", "a", "b"]
    assert all(m["object"] == "model" for m in body["data"])
    assert [m["warm"] for m in body["data"]] == [False, False, False]
    await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "b"})
    data = {m["id"]: m for m in (await proxy.http.get("/v1/models")).json()["data"]}
    assert data["b"]["warm"] is True and data["a"]["warm"] is False
    assert data["b"]["provider"] == "box"


async def test_auto_prefers_a_warm_model_among_equals(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=1)],
        [model("ma", "a"), model("mb", "b")])
    await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "mb"})
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.json()["provider"] == "b"


async def test_auto_skips_models_too_small_for_the_prompt(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=2)],
        [model("tiny", "a", context_window=512), model("long", "b", context_window=100000)])
    long_prompt = {**CHAT, "messages": [{"role": "user", "content": "lorem " * 1000}]}
    r = await proxy.http.post("/v1/chat/completions", json=long_prompt)
    assert r.status_code == 200 and r.json()["provider"] == "b"
    assert a.chat_count == 0


async def test_providers_endpoint_shows_live_state(proxy_factory, upstream):
    upstream.default = Behaviour(delay=0.3)
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1,
                                          name="The Box")], [model("m", "box")])
    tasks = [asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
             for _ in range(3)]
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    await asyncio.sleep(0.05)
    await upstream.wait_for_async(lambda: proxy.engine.provider("box").last_check is not None)
    p = (await proxy.http.get("/v1/providers")).json()["data"][0]
    for key in ("id", "name", "type", "status", "active_requests", "max_concurrent",
                "queue_depth", "latency_ms", "last_check", "consecutive_failures", "models"):
        assert key in p
    assert p["name"] == "The Box" and p["status"] == "healthy"  # probed at start-up
    assert p["active_requests"] == 1 and p["queue_depth"] == 2 and p["max_concurrent"] == 1
    await asyncio.gather(*tasks)


async def test_disable_stops_new_traffic_and_lets_in_flight_finish(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.default = Behaviour(delay=0.3)
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=2)],
        [model("ma", "a"), model("mb", "b")])
    running = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
    await a.wait_for_async(lambda: a.in_flight == 1)
    r = await proxy.http.post("/admin/providers/a/disable")
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.json()["provider"] == "b"
    assert (await running).json()["provider"] == "a"  # the in-flight one finished
    assert a.chat_count == 1
    await proxy.http.post("/admin/providers/a/enable")
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.json()["provider"] == "a"


async def test_health_check_states(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    r = await proxy.http.post("/admin/providers/box/check")
    assert r.json()["status"] == "healthy" and r.json()["latency_ms"] is not None
    upstream.default = Behaviour(health_status=404)
    for expected_failures in (1, 2):
        p = (await proxy.http.post("/admin/providers/box/check")).json()
        assert p["consecutive_failures"] == expected_failures and p["status"] == "healthy"
    p = (await proxy.http.post("/admin/providers/box/check")).json()
    assert p["status"] == "unhealthy" and "404" in p["last_error"]
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_healthy_provider"
    upstream.default = Behaviour()
    p = (await proxy.http.post("/admin/providers/box/check")).json()
    assert p["status"] == "healthy"  # one passing check brings it back
    assert (await proxy.http.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_slow_health_check_is_degraded(proxy_factory, upstream, monkeypatch):
    import lai.engine.health as health

    monkeypatch.setattr(health, "DEGRADED_LATENCY_S", 0.1)
    upstream.default = Behaviour(health_delay=0.2)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    p = (await proxy.http.post("/admin/providers/box/check")).json()
    assert p["status"] == "degraded"
    assert (await proxy.http.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_background_checks_run_in_parallel_and_skip_busy_boxes(
    proxy_factory, upstream_factory
):
    a, b = upstream_factory(), upstream_factory()
    a.default = Behaviour(delay=1.0)
    proxy = await proxy_factory(
        [provider("a", a.url, health_check_interval=0.1),
         provider("b", b.url, health_check_interval=0.1, health_check_path="/v1/models")],
        [model("ma", "a"), model("mb", "b")])
    busy = asyncio.create_task(proxy.http.post("/v1/chat/completions",
                                               json={**CHAT, "model": "ma"}))
    await a.wait_for_async(lambda: a.in_flight == 1)
    a.reset_stats()
    await asyncio.sleep(0.5)
    assert a.health_count == 0  # busy: live traffic is its health signal
    assert any(r.path == "/v1/models" for r in b.requests)
    assert proxy.engine.provider("b").status == "healthy"
    await busy


async def test_live_failures_count_toward_health(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.refuse()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=2)],
        [model("ma", "a"), model("mb", "b")])
    for _ in range(3):
        assert (await proxy.http.post("/v1/chat/completions", json=CHAT)).json()["provider"] == "b"
    assert proxy.engine.provider("a").status == "unhealthy"
    a.start()
    await proxy.http.post("/admin/providers/a/check")
    assert (await proxy.http.post("/v1/chat/completions", json=CHAT)).json()["provider"] == "a"


async def test_health_endpoint_is_open_and_summarises(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")])
    await upstream.wait_for_async(lambda: proxy.engine.provider("box").last_check is not None)
    body = (await proxy.http.get("/health")).json()
    assert body["status"] == "ok" and body["providers"]["box"]["status"] == "healthy"
    upstream.refuse()
    await proxy.http.post("/admin/providers/box/disable")
    body = (await proxy.http.get("/health")).json()
    assert body["providers"]["box"]["status"] == "disabled"
