"""Helpers for the metrics tests: a two-provider proxy, a known mix of requests, and
reading samples out of the Prometheus text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import RunningProxy, model, provider

Labels = frozenset[tuple[str, str]]
EP = "chat.completions"
HELLO = [{"role": "user", "content": "hello there"}]
"""Two words: the fake upstream counts 2 prompt tokens, and answers 3 completion tokens."""
SMALL_COST = (2 + 3) / 1000 * 0.002
BIG_COST = 2 / 1000 * 0.01 + 3 / 1000 * 0.03


def series(text: str, sample_name: str) -> dict[Labels, float]:
    """Every sample called ``sample_name`` in the exposition ``text``, by its labels."""
    out: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample_name:
                out[frozenset(s.labels.items())] = s.value
    return out


def labels(**kw: str) -> Labels:
    return frozenset(kw.items())


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


async def scrape(proxy: RunningProxy) -> str:
    r = await proxy.http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return r.text


async def two_providers(
    proxy_factory: Any, upstream_factory: Callable[..., FakeUpstream], **server: Any
) -> tuple[RunningProxy, FakeUpstream, FakeUpstream]:
    """A local box (priority 1) and a cloud API (priority 2), each on its own fake."""
    box, cloud = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("box", box.url, max_concurrent=2),
         provider("cloud", cloud.url + "/v1", type="openai", priority=2, max_concurrent=3)],
        [model("small", "box", cost_per_1k_tokens=0.002),
         model("big", "cloud", cost_per_1k_input=0.01, cost_per_1k_output=0.03)],
        **server,
    )
    await wait_until(lambda: all(p.status == "healthy" for p in proxy.engine.providers()))
    return proxy, box, cloud


async def chat(proxy: RunningProxy, model_name: str, *, stream: bool = False) -> Any:
    body: dict[str, Any] = {"model": model_name, "messages": HELLO}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return await proxy.http.post("/v1/chat/completions", json=body)


async def known_mix(proxy: RunningProxy, box: FakeUpstream) -> None:
    """Two answers from the box (one streamed), one failover from the 500-ing box to the
    cloud, one streamed cloud answer, one unknown model."""
    assert (await chat(proxy, "small")).status_code == 200
    streamed = await chat(proxy, "small", stream=True)
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    box.script(Behaviour(mode="status", status=500), Behaviour(mode="status", status=500))
    failed_over = await chat(proxy, "auto")
    assert failed_over.status_code == 200 and failed_over.json()["provider"] == "cloud"
    assert (await chat(proxy, "big", stream=True)).status_code == 200
    missing = await chat(proxy, "no-such-model")
    assert missing.status_code == 404
