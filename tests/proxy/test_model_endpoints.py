"""GET /v1/models/{id} (the openai SDK's models.retrieve), aliases in /v1/models, and
GET / and HEAD / answered without a key."""

from __future__ import annotations

import openai
import pytest

import lai
from tests.harness import model, provider


async def test_retrieve_answers_a_model_an_alias_and_404_for_unknown(proxy_factory, upstream):
    proxy = await proxy_factory(
        [provider("box", upstream.url)],
        [model("qwen", "box", aliases=["claude-sonnet-*", "gpt-4o"]), model("small", "box")])
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    got = await client.models.retrieve("qwen")
    assert got.id == "qwen" and got.object == "model" and got.owned_by == "box"
    assert (await client.models.retrieve("gpt-4o")).id == "qwen"
    assert (await client.models.retrieve("claude-sonnet-4-5")).id == "qwen"
    assert (await client.models.retrieve("box/small")).id == "small"
    assert (await client.models.retrieve("auto")).id == "auto"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("nope")
    assert info.value.code == "model_not_found"
    listed = {m.id: m for m in (await client.models.list()).data}
    assert listed["qwen"].model_extra["aliases"] == ["claude-sonnet-*", "gpt-4o"]
    assert listed["small"].model_extra["aliases"] == []


async def test_root_answers_without_a_key_and_says_nothing_secret(proxy_factory, upstream):
    proxy = await proxy_factory(
        [provider("box", upstream.url, auth_type="bearer", auth_secret="sk-upstream-secret")],
        [model("m", "box")], auth=True)
    r = await proxy.http.get("/")
    assert r.status_code == 200
    assert r.json() == {"name": "lai", "version": lai.__version__}
    head = await proxy.http.head("/")
    assert head.status_code == 200 and head.content == b""
    assert (await proxy.http.get("/v1/models")).status_code == 401
    assert (await proxy.http.get("/v1/models/m")).status_code == 401
