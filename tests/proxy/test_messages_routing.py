"""/v1/messages is served by the same engine as chat completions: it queues, fails over,
is recorded and cancelled like them. And a Claude-Code-like session works end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import orjson
import pytest
from sqlmodel import select

from lai.store.db import Store, open_store
from lai.store.keys import create_key
from lai.store.models import Message, RequestRecord
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

ASK = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def sse(text: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            out.append((lines["event"], orjson.loads(lines["data"])))
    return out


async def until(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Store]:
    """The proxy's database (harness: tmp_path/lai.db), migrated, to create keys in."""
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    yield store
    store.dispose()


async def test_a_messages_request_waits_in_the_queue_for_a_busy_slot(proxy_factory, upstream):
    upstream.default = Behaviour(delay=0.3)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    busy = asyncio.create_task(proxy.http.post(
        "/v1/chat/completions", json={"model": "m", "messages": ASK["messages"]}))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    queued = asyncio.create_task(proxy.http.post("/v1/messages", json=ASK))
    await until(lambda: proxy.engine.slots.queue_depth == 1)
    assert upstream.max_in_flight == 1
    assert (await busy).status_code == 200
    r = await queued
    assert r.status_code == 200 and r.json()["type"] == "message"
    assert upstream.max_in_flight == 1


async def test_an_agent_key_is_served_before_an_earlier_normal_one(proxy_factory, upstream,
                                                                   keys):
    agent, human = create_key(keys, "agent-ci"), create_key(keys, "human")
    upstream.default = Behaviour(delay=0.2)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")], auth=True)

    def ask(key: str, text: str):  # type: ignore[no-untyped-def]
        return asyncio.create_task(proxy.http.post(
            "/v1/messages", headers={"x-api-key": key},
            json={**ASK, "messages": [{"role": "user", "content": text}]}))

    busy = ask(human.raw_key, "first")
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    later = ask(human.raw_key, "normal")
    await until(lambda: proxy.engine.slots.queue_depth == 1)
    urgent = ask(agent.raw_key, "agent")
    await until(lambda: proxy.engine.slots.queue_depth == 2)
    for task in (busy, later, urgent):
        assert (await task).status_code == 200
    order = [r.body["messages"][-1]["content"] for r in upstream.requests if r.body]
    assert order == ["first", "agent", "normal"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_during_prefill_cancels_upstream(proxy_factory, upstream,
                                                                    stream: bool):
    # The upstream sent its 200 headers and is still on the prompt (no token yet).
    upstream.default = Behaviour(prefill_delay=30)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        leaving = asyncio.create_task(client.post("/v1/messages", json={**ASK,
                                                                      "stream": stream}))
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)
        leaving.cancel()
    await upstream.wait_for_async(lambda: upstream.disconnects == 1, timeout=5)
    await until(lambda: proxy.engine.slots.in_flight["a"] == 0)
    upstream.default = Behaviour()
    for _ in range(2):
        assert (await proxy.http.post("/v1/messages", json=ASK)).status_code == 200
    assert proxy.engine.provider("a").status == "healthy"


async def test_a_queued_client_that_leaves_frees_its_place(proxy_factory, upstream):
    upstream.default = Behaviour(delay=0.5)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    busy = asyncio.create_task(proxy.http.post("/v1/messages", json=ASK))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        queued = asyncio.create_task(client.post("/v1/messages", json={**ASK, "stream": True}))
        await until(lambda: proxy.engine.slots.queue_depth == 1)
        queued.cancel()
    await until(lambda: proxy.engine.slots.queue_depth == 0)
    assert (await busy).status_code == 200
    assert upstream.chat_count == 1


async def test_a_full_queue_is_a_503_overloaded_error_with_retry_after(proxy_factory, upstream):
    upstream.default = Behaviour(delay=0.5)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")], queue_max_size=0)
    busy = asyncio.create_task(proxy.http.post("/v1/messages", json=ASK))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    r = await proxy.http.post("/v1/messages", json=ASK)
    assert r.status_code == 503 and "retry-after" in r.headers
    assert r.json()["error"]["type"] == "overloaded_error"
    assert (await busy).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_primary_fails_over(proxy_factory, upstream_factory, stream: bool):
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1), provider("b", b.url, priority=2)],
        [model("m", "a", fallbacks=["b/m"]), model("m", "b")])
    a.refuse()
    r = await proxy.http.post("/v1/messages", json={**ASK, "stream": stream})
    assert r.status_code == 200 and r.headers["x-provider"] == "b"
    if stream:
        assert sse(r.text)[-1][0] == "message_stop"
    else:
        assert r.json()["content"][0]["text"] == "tok0 tok1 tok2"
    assert proxy.engine.provider("a").consecutive_failures == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_requests_are_recorded_like_chat(proxy_factory, upstream, stream: bool):
    upstream.default = Behaviour(content="The answer.")
    proxy = await proxy_factory(
        [provider("a", upstream.url)],
        [model("m", "a", aliases=["claude-*"], cost_per_1k_tokens=1.0)])
    r = await proxy.http.post("/v1/messages", headers={"X-Conversation-ID": "conv-msg"},
                              json={**ASK, "model": "claude-haiku-4", "stream": stream,
                                    "system": "sys"})
    assert r.status_code == 200 and r.headers["x-conversation-id"] == "conv-msg"
    await proxy.runtime.recorder.flush()
    with proxy.runtime.store.session() as s:
        [row] = s.exec(select(RequestRecord)).all()
        msgs = s.exec(select(Message).where(Message.conversation_id == "conv-msg")).all()
    assert row.endpoint == "messages" and row.status == "success"
    assert (row.model_requested, row.model_id, row.provider_id) == ("claude-haiku-4", "m", "a")
    assert row.streaming is stream and row.finish_reason == "stop"
    assert row.completion_tokens == 2 and row.prompt_tokens > 0
    assert row.cost_usd == pytest.approx((row.prompt_tokens + 2) / 1000)
    assert row.request_id.removeprefix("req_") in r.headers["request-id"]
    contents = {m.role: m.content for m in msgs}
    assert contents["user"] == "hi" and contents["assistant"] == "The answer."
    metrics = (await proxy.http.get("/metrics")).text
    assert ('local_ai_requests_total{endpoint="messages",model="m",provider="a",'
            'status="success"} 1.0') in metrics


async def test_a_client_that_leaves_mid_stream_frees_the_slot_and_cancels_upstream(
    proxy_factory, upstream
):
    upstream.default = Behaviour(chunks=200, delay=0.05)
    proxy = await proxy_factory([provider("a", upstream.url, max_concurrent=1)],
                                [model("m", "a")])
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
        async with client.stream("POST", "/v1/messages", json={**ASK, "stream": True}) as r:
            async for line in r.aiter_lines():
                if "content_block_delta" in line:
                    break
            assert proxy.engine.slots.in_flight["a"] == 1
    await upstream.wait_for_async(lambda: upstream.disconnects == 1, timeout=5)
    await until(lambda: proxy.engine.slots.in_flight["a"] == 0)
    upstream.default = Behaviour()
    assert (await proxy.http.post("/v1/messages", json=ASK)).status_code == 200


async def test_an_upstream_that_breaks_mid_stream_ends_with_an_error_event(proxy_factory,
                                                                          upstream):
    upstream.default = Behaviour(mode="cut", cut_after=2, chunks=5)
    proxy = await proxy_factory([provider("a", upstream.url)], [model("m", "a")])
    c = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        async with c.messages.stream(**ASK) as stream:
            async for _ in stream:
                pass
    assert info.value.body["error"]["type"] == "api_error"
    r = await proxy.http.post("/v1/messages", json={**ASK, "stream": True})
    names = [n for n, _ in sse(r.text)]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names
    await until(lambda: proxy.engine.slots.in_flight["a"] == 0)


async def test_a_prompt_too_large_says_prompt_is_too_long(proxy_factory, upstream):
    proxy = await proxy_factory([provider("a", upstream.url)],
                                [model("m", "a", context_window=1000, max_tokens=100)])
    r = await proxy.http.post("/v1/messages", json={
        **ASK, "max_tokens": 32000, "messages": [{"role": "user", "content": "word " * 2000}]})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("prompt is too long")
    # A max_tokens over the model's own limit is lowered to it, not refused.
    r = await proxy.http.post("/v1/messages", json={**ASK, "max_tokens": 32000})
    assert r.status_code == 200 and upstream.requests[-1].body["max_tokens"] == 100
    assert upstream.chat_count == 1


async def test_reasoning_from_the_upstream_streams_as_thinking(proxy_factory, upstream):
    upstream.default = Behaviour(reasoning=["Let me ", "think."], content="Done.")
    proxy = await proxy_factory([provider("a", upstream.url)], [model("m", "a")])
    c = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0)
    async with c.messages.stream(**ASK) as stream:
        kinds = [e.delta.type async for e in stream if e.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert kinds == ["thinking_delta", "thinking_delta", "text_delta"]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think."
    plain = await c.messages.create(**ASK)
    assert [b.type for b in plain.content] == ["thinking", "text"]


CLAUDE_CODE_BETAS = ",".join([
    "claude-code-20250219", "oauth-2025-04-20", "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14", "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05", "some-future-beta-2027-01-01"])


async def test_a_claude_code_like_session(proxy_factory, upstream, keys):
    issued = create_key(keys, "laptop")
    upstream.script(Behaviour(tool_calls=[{"id": "call_1", "name": "Bash",
                                           "arguments": '{"command": "ls"}'}], chunks=5))
    proxy = await proxy_factory(
        [provider("gpu", upstream.url)],
        [model("qwen3-coder", "gpu", aliases=["claude-sonnet-*", "claude-opus-*"],
               max_tokens=8192),
         model("qwen-small", "gpu", aliases=["claude-haiku-*"])], auth=True)
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=30) as http:
        probe = await http.head("/")
        assert probe.status_code == 200
        body = {
            "model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": True,
            "system": [
                {"type": "text", "text": "You are Claude Code, Anthropic's official CLI.",
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "x" * 20000, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "list the files",
                 "cache_control": {"type": "ephemeral"}}]}],
            "tools": [{"name": name, "description": f"The {name} tool",
                       "input_schema": {"type": "object",
                                        "properties": {"command": {"type": "string"}},
                                        "required": ["command"],
                                        "additionalProperties": False,
                                        "$schema": "http://json-schema.org/draft-07/schema#"}}
                      for name in ("Bash", "Read", "Edit", "Grep", "Glob")],
            "tool_choice": {"type": "auto"},
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "metadata": {"user_id": "user_0123_account__session_abcd"},
            "temperature": 1,
        }
        r = await http.post("/v1/messages?beta=true", json=body, headers={
            "Authorization": f"Bearer {issued.raw_key}", "anthropic-version": "2023-06-01",
            "anthropic-beta": CLAUDE_CODE_BETAS, "x-app": "cli",
            "anthropic-dangerous-direct-browser-access": "true"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    names = [n for n, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    assert events[0][1]["message"]["model"] == "claude-sonnet-4-5-20250929"
    [start] = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["name"] == "Bash" and start["content_block"]["id"] == "call_1"
    args = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert orjson.loads(args) == {"command": "ls"}
    assert [d for n, d in events if n == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"
    sent = upstream.requests[-1].body
    assert sent["model"] == "qwen3-coder" and sent["max_tokens"] == 8192
    assert [t["function"]["name"] for t in sent["tools"]][:2] == ["Bash", "Read"]
    assert "thinking" not in sent and "cache_control" not in orjson.dumps(sent).decode()

    # Background work: Claude Code asks for haiku, with x-api-key this time.
    c = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=issued.raw_key, max_retries=0)
    small = await c.messages.create(model="claude-haiku-4-5-20251001", max_tokens=512,
                                    messages=[{"role": "user", "content": "title?"}])
    assert small.model == "claude-haiku-4-5-20251001"
    assert upstream.requests[-1].body["model"] == "qwen-small"
