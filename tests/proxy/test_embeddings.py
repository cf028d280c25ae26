"""POST /v1/embeddings through the real proxy with the openai SDK, in front of fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest

from lai.store.requests import requests_between
from tests.fakes.upstream import Behaviour, FakeUpstream, embedding
from tests.harness import model, provider


def _setup(a: FakeUpstream, b: FakeUpstream | None = None) -> tuple[list[Any], list[Any]]:
    providers = [provider("a", a.url, priority=1)]
    models = [model("chat-a", "a", is_default=True),
              model("embed", "a", kind="embedding", upstream_id="nomic-embed-text",
                    cost_per_1k_tokens=2.0, context_window=512)]
    if b is not None:
        providers.append(provider("b", b.url, priority=2))
        models.append(model("embed", "b", kind="embedding"))
    return providers, models


def _client(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)


async def test_the_sdk_gets_vectors_with_the_requested_model_recorded_with_cost(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory(*_setup(upstream))
    async with _client(proxy) as client:
        done = await client.embeddings.create(model="embed", input=["hello world", "bye"])
        auto = await client.embeddings.create(model="auto", input="one two three")
    assert [d.embedding for d in done.data] == [embedding("hello world"), embedding("bye")]
    assert done.model == "embed" and auto.model == "embed"
    assert done.usage.prompt_tokens == 3
    assert upstream.requests[-2].body["model"] == "nomic-embed-text"
    assert upstream.embedding_count == 2 and upstream.chat_count == 0
    await proxy.runtime.recorder.flush()
    rows = requests_between(proxy.runtime.store, datetime.now(UTC) - timedelta(hours=1))
    assert [(r.endpoint, r.model_id, r.provider_id, r.status) for r in rows] == [
        ("embeddings", "embed", "a", "success")] * 2
    assert rows[0].prompt_tokens == 3 and rows[0].cost_usd == pytest.approx(0.006)
    assert rows[0].conversation_id is None


async def test_embeddings_fail_over_and_retry_like_chat(
    proxy_factory: Any, upstream_factory: Any
) -> None:
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(*_setup(a, b))
    a.script(Behaviour(mode="status", status=503))
    async with _client(proxy) as client:
        retried = await client.embeddings.with_raw_response.create(model="embed", input="x")
        assert retried.headers["x-provider"] == "a" and a.embedding_count == 2
        a.refuse()
        moved = await client.embeddings.with_raw_response.create(model="embed", input="x")
        assert moved.headers["x-provider"] == "b"
    await proxy.runtime.recorder.flush()
    rows = requests_between(proxy.runtime.store, datetime.now(UTC) - timedelta(hours=1))
    assert rows[-1].failover_from == ["a"]


async def test_chat_and_embedding_models_refuse_each_others_requests(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory(*_setup(upstream))
    async with _client(proxy) as client:
        with pytest.raises(openai.BadRequestError, match="chat model"):
            await client.embeddings.create(model="chat-a", input="x")
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            await client.chat.completions.create(
                model="embed", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            await client.responses.create(model="embed", input="hi")
        chat = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
        assert chat.headers["x-model"] == "chat-a"
        by_provider = await client.embeddings.with_raw_response.create(model="a", input="x")
        assert by_provider.headers["x-model"] == "embed"
    assert upstream.embedding_count == 1
    models = (await proxy.http.get("/v1/models")).json()["data"]
    assert {m["id"]: m.get("kind") for m in models} == {
        "auto": None, "chat-a": "chat", "embed": "embedding"}


@pytest.mark.parametrize(("body", "status"), [
    (b"nope", 400), (b'{"model": "embed"}', 400), (b'{"model": "embed", "input": [1.5]}', 400),
    (b'{"model": "embed", "input": "x", "encoding_format": "hex"}', 400),
    (b'{"model": "missing", "input": "x"}', 404),
    (b'{"model": "embed", "input": "' + b"word " * 3000 + b'"}', 400),
])
async def test_bad_embedding_requests_get_openai_errors(
    proxy_factory: Any, upstream: FakeUpstream, body: bytes, status: int
) -> None:
    proxy = await proxy_factory(*_setup(upstream))
    r = await proxy.http.post("/v1/embeddings", content=body,
                              headers={"content-type": "application/json"})
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    assert upstream.embedding_count == 0
