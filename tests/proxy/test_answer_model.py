"""The ``model`` of every chat completion answer is the name the client asked for (lai's
model id for ``auto`` or a provider id), never the upstream's own: behind
llama-cpp-python that is the server's GGUF file path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider

GGUF = "/srv/models/SmolLM2-135M-Instruct.Q4_1.gguf"
ODD = 'C:\\models\\"quoted" \u00e9t\u00e9 \u2603.gguf'
"""Backslashes, quotes and non-ASCII: the replacement must get the string's end right."""


@pytest.fixture
async def proxy(proxy_factory, upstream: FakeUpstream):  # type: ignore[no-untyped-def]
    upstream.default = Behaviour(model=GGUF, chunks=4)
    return await proxy_factory([provider("box", upstream.url)],
                               [model("small", "box", upstream_id="Org/Small", is_default=True)])


def client(proxy) -> openai.AsyncOpenAI:  # type: ignore[no-untyped-def]
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize(("asked", "answered"), [
    ("small", "small"), ("auto", "small"), ("box", "small"), ("box/small", "box/small")])
async def test_non_streamed_answer_names_the_model_asked_for(proxy, asked, answered) -> None:
    done = await client(proxy).chat.completions.create(
        model=asked, messages=[{"role": "user", "content": "hi"}])
    assert done.model == answered
    assert done.choices[0].message.content == "tok0 tok1 tok2 tok3"


@pytest.mark.parametrize(("asked", "answered"), [("small", "small"), ("auto", "small")])
async def test_every_streamed_chunk_names_the_model_asked_for(proxy, asked, answered) -> None:
    stream = await client(proxy).chat.completions.create(
        model=asked, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert len(chunks) == 7  # role, 4 words, finish, usage
    assert {c.model for c in chunks} == {answered}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_escaped_upstream_model_is_replaced_whole(proxy, upstream: FakeUpstream) -> None:
    upstream.default = Behaviour(model=ODD)
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "small", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    lines = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(ln) for ln in lines[:-1]]
    assert chunks and all(c["model"] == "small" and c["provider"] == "box" for c in chunks)
    assert "gguf" not in r.text
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "small", "messages": [{"role": "user", "content": "hi"}]})
    assert r.json()["model"] == "small" and "gguf" not in r.text


@pytest.fixture
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-ant-test-0123456789") as fake:
        fake.model = "claude-internal-2025-01-01"
        yield fake


async def test_anthropic_answers_name_the_model_asked_for(proxy_factory, claude_fake) -> None:
    proxy = await proxy_factory(
        [provider("claude", claude_fake.url, type="anthropic", auth_type="api_key",
                  auth_secret=claude_fake.api_key)],
        [model("sonnet", "claude", upstream_id="claude-test-1")])
    sdk = client(proxy)
    done = await sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}])
    assert done.model == "sonnet"
    stream = await sdk.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks and {c.model for c in chunks} == {"sonnet"}
