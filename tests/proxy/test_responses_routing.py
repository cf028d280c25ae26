"""Responses requests are queued, fail over and are recorded exactly as chat completions
are: each test runs once per face, and only the face differs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lai.store.requests import requests_between
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider

FACES = ["chat", "responses"]


def _request(face: str, stream: bool = False) -> tuple[str, dict[str, Any]]:
    if face == "chat":
        return "/v1/chat/completions", {
            "model": "auto", "stream": stream,
            "messages": [{"role": "user", "content": "hello there"}]}
    return "/v1/responses", {"model": "auto", "stream": stream, "input": "hello there"}


def _text(face: str, r: httpx.Response) -> str:
    if face == "chat":
        return str(r.json()["choices"][0]["message"]["content"])
    return "".join(p["text"] for o in r.json()["output"] for p in o["content"])


async def _ask(http: httpx.AsyncClient, face: str, stream: bool = False,
               **kw: Any) -> tuple[httpx.Response, str]:
    path, body = _request(face, stream)
    r = await http.post(path, json=body, **kw)
    if not stream or r.status_code != 200:
        return r, _text(face, r) if r.status_code == 200 else ""
    data = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    if face == "chat":
        text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                       for d in data if d != "[DONE]" and json.loads(d).get("choices"))
    else:
        events = [json.loads(d) for d in data]
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert events[-1]["type"] == "response.completed"
    return r, text


def _two_boxes(a: FakeUpstream, b: FakeUpstream, **kw: Any) -> tuple[list[Any], list[Any]]:
    return ([provider("a", a.url, priority=1, **kw), provider("b", b.url, priority=2, **kw)],
            [model("ma", "a"), model("mb", "b")])


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_primary_fails_over_to_the_secondary(
    proxy_factory: Any, upstream_factory: Any, face: str, stream: bool
) -> None:
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(*_two_boxes(a, b))
    a.refuse()
    r, text = await _ask(proxy.http, face, stream)
    assert r.status_code == 200 and r.headers["x-provider"] == "b"
    assert text == "tok0 tok1 tok2"
    if face == "responses" and not stream:
        assert r.json()["model"] == "mb"  # auto: lai's id of the model that served
    assert proxy.engine.provider("a").consecutive_failures == 1


@pytest.mark.parametrize("face", FACES)
async def test_a_5xx_is_retried_once_on_the_same_provider(
    proxy_factory: Any, upstream_factory: Any, face: str
) -> None:
    a, b = upstream_factory(), upstream_factory()
    a.script(Behaviour(mode="status", status=503))
    proxy = await proxy_factory(*_two_boxes(a, b))
    r, _ = await _ask(proxy.http, face)
    assert r.status_code == 200 and r.headers["x-provider"] == "a"
    assert (a.chat_count, b.chat_count) == (2, 0)


@pytest.mark.parametrize("face", FACES)
async def test_every_provider_failing_is_a_502_in_openai_shape(
    proxy_factory: Any, upstream_factory: Any, face: str
) -> None:
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(*_two_boxes(a, b))
    a.refuse()
    b.refuse()
    r, _ = await _ask(proxy.http, face)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_error"


@pytest.mark.parametrize("face", FACES)
async def test_a_request_waits_for_a_busy_slot_then_is_served(
    proxy_factory: Any, upstream: FakeUpstream, face: str
) -> None:
    # Long enough for the second request to be seen waiting, even on a loaded machine.
    upstream.script(Behaviour(delay=1.5))
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")])
    path, body = _request("chat")
    busy = asyncio.create_task(proxy.http.post(path, json=body))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    queued = asyncio.create_task(_ask(proxy.http, face))
    await _until(lambda: proxy.engine.slots.queue_depth == 1, timeout=1.5)
    r, text = await queued
    assert r.status_code == 200 and text == "tok0 tok1 tok2"
    assert (await busy).status_code == 200
    assert upstream.max_in_flight == 1


@pytest.mark.parametrize("face", FACES)
async def test_a_queue_timeout_is_a_503_with_retry_after(
    proxy_factory: Any, upstream: FakeUpstream, face: str
) -> None:
    upstream.script(Behaviour(mode="hang"))
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")], queue_timeout=0.2)
    path, body = _request("chat")
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as other:
        busy = asyncio.create_task(other.post(path, json=body))
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        r, _ = await _ask(proxy.http, face)
        busy.cancel()
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "provider_capacity_exceeded"
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_request_is_recorded_with_tokens_cost_and_failover(
    proxy_factory: Any, upstream_factory: Any, face: str, stream: bool
) -> None:
    a, b = upstream_factory(), upstream_factory()
    providers, models = _two_boxes(a, b)
    models[1]["cost_per_1k_tokens"] = 1.0
    proxy = await proxy_factory(providers, models)
    a.refuse()
    r, _ = await _ask(proxy.http, face, stream, headers={"X-Conversation-ID": f"c-{face}"})
    assert r.status_code == 200
    await proxy.runtime.recorder.flush()
    [row] = requests_between(proxy.runtime.store, datetime.now(UTC) - timedelta(hours=1))
    assert row.endpoint == ("chat.completions" if face == "chat" else "responses")
    assert (row.status, row.provider_id, row.model_id) == ("success", "b", "mb")
    assert row.failover_from == ["a"]
    assert row.streaming is stream
    assert row.prompt_tokens == 2 and row.completion_tokens == 3
    assert row.cost_usd == pytest.approx(5 / 1000)
    conv = (await proxy.http.get(f"/v1/conversations/c-{face}")).json()
    assert [m["content"] for m in conv["messages"]] == ["hello there", "tok0 tok1 tok2"]
    metrics = (await proxy.http.get("/metrics")).text
    endpoint = "chat.completions" if face == "chat" else "responses"
    assert (f'local_ai_requests_total{{endpoint="{endpoint}",model="mb",provider="b",'
            f'status="success"}} 1.0') in metrics


@pytest.mark.parametrize("face", FACES)
async def test_a_queued_client_that_leaves_frees_its_place(
    proxy_factory: Any, upstream: FakeUpstream, face: str
) -> None:
    upstream.script(Behaviour(mode="hang"))
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")])
    path, body = _request("chat")
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as holder, \
            httpx.AsyncClient(base_url=proxy.url, trust_env=False) as other:
        busy = asyncio.create_task(holder.post(path, json=body))
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        queued = asyncio.create_task(_ask(other, face, stream=True))
        await _until(lambda: proxy.engine.slots.queue_depth == 1)
        queued.cancel()
        await _until(lambda: proxy.engine.slots.queue_depth == 0)
        busy.cancel()
    await _until(lambda: proxy.engine.provider("box").active_requests == 0)
    assert upstream.chat_count == 1  # the one that left never reached the upstream
    r, _ = await _ask(proxy.http, face)  # and the box serves again
    assert r.status_code == 200


async def _until(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition`` (without blocking the loop) until true; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
