"""Scheduling through the real proxy: the estimate in the stored request row, a
local-only key refused a cloud-only model in the API's error shape, and the estimated
start of queued requests in GET /admin/queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lai.store.db import open_store
from lai.store.keys import create_key
from lai.store.keyvalues import LOCAL_ONLY
from lai.store.requests import get_request
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


async def test_the_request_row_keeps_the_estimate_and_why(proxy_factory, upstream_factory) -> None:
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory([provider("a", a.url), provider("b", b.url)],
                                [model("small", "a"), model("small", "b")])
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "small"})
    assert r.status_code == 200, r.text
    await proxy.runtime.recorder.flush()
    row = get_request(proxy.runtime.store, r.headers["x-request-id"])
    assert row is not None and row.estimate_ms is not None and row.estimate_ms >= 0
    assert row.route_reason is not None
    assert row.route_reason.startswith(f"{row.provider_id}/small")
    assert "best of 2" in row.route_reason


async def test_fifo_stores_no_estimate(proxy_factory, upstream) -> None:
    proxy = await proxy_factory([provider("a", upstream.url)], [model("small", "a")],
                                scheduling="fifo")
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    await proxy.runtime.recorder.flush()
    row = get_request(proxy.runtime.store, r.headers["x-request-id"])
    assert row is not None and row.estimate_ms is None and row.route_reason is None


@pytest.fixture
def home_key(tmp_path: Path) -> str:
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    try:
        return create_key(store, "home", scopes=[LOCAL_ONLY]).raw_key
    finally:
        store.dispose()


async def test_a_local_only_key_gets_403_for_a_cloud_only_model(
    proxy_factory, upstream_factory, home_key
) -> None:
    box, cloud = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("box", box.url),
         provider("cloud", cloud.url + "/v1", type="openai", priority=10)],
        [model("small", "box"), model("gpt", "cloud")], auth=True, spill_after="0s")
    headers = {"Authorization": f"Bearer {home_key}"}
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt"},
                              headers=headers)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert err["type"] == "permission_error" and "local-only" in err["message"]
    # auto stays home even with spill_after = 0s and a busy box
    box.script(Behaviour(delay=0.3))
    first = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT,
                                                headers=headers))
    await box.wait_for_async(lambda: box.in_flight == 1)
    second = await proxy.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert (await first).status_code == 200 and second.status_code == 200
    assert second.json()["provider"] == "box"
    assert cloud.chat_count == 0


async def test_admin_queue_shows_the_estimated_start(proxy_factory, upstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("small", "box")])
    upstream.script(Behaviour(delay=0.5))
    first = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    second = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
    for _ in range(200):
        listed = (await proxy.http.get("/admin/queue")).json()["data"]
        if listed:
            break
        await asyncio.sleep(0.005)
    assert len(listed) == 1
    # one request ahead on one slot: about one service time (nothing learnt: the guess)
    assert listed[0]["estimated_start_ms"] > 0
    await asyncio.gather(first, second)
