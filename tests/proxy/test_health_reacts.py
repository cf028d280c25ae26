"""Health that reacts, end to end: a provider with nothing listening is unhealthy as soon
as the proxy is up, and a model server started on its port afterwards serves requests
within a few seconds (not after the 30 s check interval)."""

from __future__ import annotations

import asyncio
import time

from tests.fakes.upstream import FakeUpstream
from tests.harness import model, provider


async def test_a_dead_box_is_found_at_once_and_a_restarted_one_within_seconds(
    proxy_factory,  # type: ignore[no-untyped-def]
) -> None:
    box = FakeUpstream().start()
    box.refuse()  # the port is kept; nothing listens on it
    try:
        proxy = await proxy_factory(
            [provider("box", box.url, health_check_interval=30)], [model("small", "box")])
        (p,) = (await proxy.http.get("/v1/providers")).json()["data"]
        assert p["status"] == "unhealthy", p
        assert "connection refused" in p["last_error"]
        models = (await proxy.http.get("/v1/models")).json()["data"]
        assert [(m["id"], m["status"]) for m in models] == [("auto", "unhealthy"),
                                                            ("small", "unhealthy")]
        body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}
        r = await proxy.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_healthy_provider"

        box.start()  # the model server is back, on the same port
        t0 = time.monotonic()
        while True:
            r = await proxy.http.post("/v1/chat/completions", json=body)
            if r.status_code == 200 or time.monotonic() - t0 > 10:
                break
            await asyncio.sleep(0.1)
        back_after = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert back_after < 5, f"served again only after {back_after:.1f} s"
        models = (await proxy.http.get("/v1/models")).json()["data"]
        assert models[0]["status"] == "healthy"
    finally:
        box.stop()
