"""Failures as DESIGN.md's routing section says, through the real proxy."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def two_boxes(a, b, **kw):
    return ([provider("a", a.url, priority=1, **kw), provider("b", b.url, priority=2, **kw)],
            [model("ma", "a"), model("mb", "b")])


def data_lines(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


async def test_killed_primary_fails_over_to_secondary_at_once(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.json()["provider"] == "a"
    a.refuse()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.json()["provider"] == "b"
    assert r.headers["X-Provider"] == "b"
    assert loop.time() - t0 < 0.9  # no retry delay for a refused connection
    snap = proxy.engine.provider("a")
    assert snap.consecutive_failures == 1
    assert "refused" in (snap.last_error or "")


async def test_reset_connection_fails_over(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="reset"))
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["provider"] == "b"


async def test_5xx_is_retried_once_then_succeeds(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="status", status=503))
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["provider"] == "a"
    assert a.chat_count == 2 and b.chat_count == 0


async def test_429_twice_fails_over_and_honours_retry_after(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="status", status=429, retry_after=0.3),
             Behaviour(mode="status", status=429))
    proxy = await proxy_factory(*two_boxes(a, b), retry_delay=0.01)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["provider"] == "b"
    assert a.chat_count == 2
    assert loop.time() - t0 >= 0.3  # waited the upstream's Retry-After before the retry


async def test_every_provider_failing_names_each_one(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.default = Behaviour(mode="status", status=500, error_message="GPU fell off the bus")
    proxy = await proxy_factory(*two_boxes(a, b))
    b.refuse()  # after start-up: a box refused at its first probe is unhealthy at once
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "api_error" and err["code"] == "upstream_error"
    assert "a: HTTP 500" in err["message"] and "GPU fell off the bus" in err["message"]
    assert "b: connection refused" in err["message"]


async def test_read_timeout_is_504_without_retry(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="hang"))
    proxy = await proxy_factory(*two_boxes(a, b, read_timeout=0.3))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert a.chat_count == 1 and b.chat_count == 0


async def test_upstream_4xx_is_the_clients_mistake_not_a_failover(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="status", status=400, error_message="max_tokens is too large"))
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400
    assert "max_tokens is too large" in r.json()["error"]["message"]
    assert b.chat_count == 0
    assert proxy.engine.provider("a").consecutive_failures == 0


async def test_explicit_model_falls_over_along_its_fallbacks(proxy_factory, upstream_factory):
    a, b, c = upstream_factory(), upstream_factory(), upstream_factory()
    a.refuse()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=2),
         provider("c", c.url, priority=3)],
        [model("big", "a", fallbacks=["c/other"]), model("mid", "b"), model("other", "c")])
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "big"})
    assert r.status_code == 200
    assert r.json()["provider"] == "c"  # the fallback, not b (higher priority, not listed)
    assert r.headers["X-Model"] == "other"


async def test_cloud_joins_auto_only_with_cloud_fallback(proxy_factory, upstream_factory):
    a, cloud = upstream_factory(), upstream_factory()
    a.refuse()
    providers = [provider("a", a.url, priority=1),
                 provider("cloud", cloud.url + "/v1", type="openai", priority=9,
                          auth_type="bearer", auth_secret="sk-test")]
    models = [model("local", "a"), model("gpt", "cloud")]
    proxy = await proxy_factory(providers, models, cloud_fallback=False)
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    # "a" refused its start-up probe: unhealthy, and auto may not use the cloud.
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_healthy_provider"
    assert cloud.chat_count == 0
    proxy2 = await proxy_factory(providers, models, cloud_fallback=True)
    r = await proxy2.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["provider"] == "cloud"
    sent = cloud.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"


async def test_stream_fails_over_before_its_first_byte(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="truncate"))  # llama.cpp's bare [DONE] for a dropped stream
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    assert r.headers["X-Provider"] == "b"
    chunks = [orjson.loads(e) for e in data_lines(r.text)[:-1]]
    assert {c["provider"] for c in chunks} == {"b"}
    assert proxy.engine.provider("a").consecutive_failures == 1


async def test_stream_cut_midway_ends_with_an_error_event(proxy_factory, upstream_factory):
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="cut", chunks=5, cut_after=2))
    proxy = await proxy_factory(*two_boxes(a, b))
    r = await asyncio.wait_for(
        proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": True}), timeout=10)
    events = data_lines(r.text)
    assert events[-1] == "[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == "upstream_error"
    assert "a:" in error["message"]
    content = [orjson.loads(e) for e in events[:-2]]
    assert {c["provider"] for c in content} == {"a"}  # no switch after the first byte
    assert b.chat_count == 0
    assert proxy.engine.provider("a").consecutive_failures == 1


async def test_stream_without_finish_reason_is_reported_as_truncated(proxy_factory, upstream):
    upstream.script(Behaviour(chunks=3, finish_reason=""))
    proxy = await proxy_factory([provider("a", upstream.url)], [model("m", "a")])
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = data_lines(r.text)
    assert events[-1] == "[DONE]"
    assert "without a finish_reason" in orjson.loads(events[-2])["error"]["message"]
    assert proxy.engine.provider("a").consecutive_failures == 1


async def test_disconnecting_streaming_client_frees_slot_and_cancels_upstream(
    proxy_factory, upstream
):
    upstream.default = Behaviour(chunks=200, delay=0.05)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        async with client.stream("POST", "/v1/chat/completions",
                                 json={**CHAT, "stream": True}) as r:
            async for _ in r.aiter_lines():
                break
            assert proxy.engine.slots.in_flight["a"] == 1
    await upstream.wait_for_async(lambda: upstream.disconnects == 1, timeout=5)
    for _ in range(100):
        if proxy.engine.slots.in_flight["a"] == 0:
            break
        await asyncio.sleep(0.02)
    assert proxy.engine.slots.in_flight["a"] == 0
    upstream.default = Behaviour()
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200


async def test_disconnecting_queued_client_frees_its_place(proxy_factory, upstream):
    upstream.default = Behaviour(delay=0.5)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    busy = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        queued = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        for _ in range(100):
            if proxy.engine.slots.queue_depth == 1:
                break
            await asyncio.sleep(0.01)
        assert proxy.engine.slots.queue_depth == 1
        queued.cancel()
    for _ in range(100):
        if proxy.engine.slots.queue_depth == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.engine.slots.queue_depth == 0
    assert (await busy).status_code == 200
    assert upstream.chat_count == 1
