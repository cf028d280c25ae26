"""Providers that speak Messages themselves (type anthropic, or messages_api = true) get
the client's own body, renamed, and their events come back as they were sent."""

from __future__ import annotations

import anthropic
import orjson
import pytest
from sqlmodel import select

from lai.proxy.anthropic.answer import PassthroughRelay
from lai.store.models import RequestRecord
from tests.fakes.anthropic import FakeAnthropic
from tests.harness import model, provider

BODY = {
    "model": "claude-sonnet-4-5", "max_tokens": 32000,
    "system": [{"type": "text", "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "metadata": {"user_id": "u1"}, "top_k": 5, "temperature": 1,
}


def anthropic_provider(pid: str, fake: FakeAnthropic, **kw):  # type: ignore[no-untyped-def]
    return provider(pid, fake.url, type="anthropic", auth_type="api_key",
                    auth_secret="sk-test", **kw)


def sse(text: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            out.append((lines["event"], orjson.loads(lines["data"])))
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_an_anthropic_provider_gets_the_clients_body_renamed(proxy_factory,
                                                                  stream: bool) -> None:
    with FakeAnthropic() as fake:
        fake.text = "Hello there friend"
        proxy = await proxy_factory(
            [anthropic_provider("claude", fake)],
            [model("sonnet", "claude", upstream_id="claude-test-1", max_tokens=8192,
                   aliases=["claude-sonnet-*"])])
        r = await proxy.http.post("/v1/messages?beta=true", json={**BODY, "stream": stream},
                                  headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
        assert r.status_code == 200, r.text
        sent = fake.message_requests[-1]
        expected = {**BODY, "model": "claude-test-1", "max_tokens": 8192,
                    "thinking": {"type": "enabled", "budget_tokens": 8191}}
        if stream:
            expected["stream"] = True
        assert sent.body == expected
        assert "anthropic-beta" not in sent.headers
        if stream:
            events = sse(r.text)
            assert events[0][1]["message"]["model"] == "claude-sonnet-4-5"
            assert events[0][1]["message"]["id"].startswith("msg_fake")
            assert [n for n, _ in events].count("ping") == 1
            text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
            assert text == "Hello there friend" and events[-1][0] == "message_stop"
        else:
            doc = r.json()
            assert doc["model"] == "claude-sonnet-4-5" and doc["id"].startswith("msg_fake")
            assert doc["content"] == [{"type": "text", "text": "Hello there friend"}]
            assert "cost_usd" not in doc
        await proxy.runtime.recorder.flush()
        with proxy.runtime.store.session() as s:
            [row] = s.exec(select(RequestRecord)).all()
        assert row.endpoint == "messages" and row.provider_id == "claude"
        assert row.model_requested == "claude-sonnet-4-5" and row.completion_tokens == 3
        assert row.finish_reason == "stop"


async def test_an_error_before_any_content_fails_over_to_the_next_provider(proxy_factory):
    with FakeAnthropic() as first, FakeAnthropic() as second:
        first.stream_error = True
        second.text = "From the second."
        proxy = await proxy_factory(
            [anthropic_provider("one", first, priority=1),
             anthropic_provider("two", second, priority=2)],
            [model("m", "one", fallbacks=["two/m"]), model("m", "two")])
        c = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0)
        async with c.messages.stream(model="m", max_tokens=50,
                                     messages=[{"role": "user", "content": "hi"}]) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == "From the second."
        assert len(first.message_requests) == 1 and len(second.message_requests) == 1

        first.stream_error, first.status = False, 529
        msg = await c.messages.create(model="m", max_tokens=50,
                                      messages=[{"role": "user", "content": "hi"}])
        assert msg.content[0].text == "From the second."
        assert len(first.message_requests) == 3  # the 529 was retried once, then failed over


async def test_a_local_server_with_messages_api_is_passed_through(proxy_factory):
    with FakeAnthropic(api_key=None) as fake:  # type: ignore[arg-type]
        fake.text = "Local hello"
        proxy = await proxy_factory(
            [provider("llama", fake.url, messages_api=True, health_check_path="/v1/models")],
            [model("qwen", "llama", upstream_id="qwen.gguf")])
        c = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0)
        async with c.messages.stream(model="qwen", max_tokens=4000, thinking={
                "type": "enabled", "budget_tokens": 2000},
                messages=[{"role": "user", "content": "hi"}]) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == "Local hello" and final.model == "qwen"
        [req] = fake.message_requests
        assert req.body["model"] == "qwen.gguf" and req.body["thinking"]["budget_tokens"] == 2000
        assert req.headers["anthropic-version"] == "2023-06-01"


def test_relay_renames_the_model_and_ends_broken_streams_with_an_error() -> None:
    relay = PassthroughRelay(model="claude-x")
    start = relay.feed(b"message_start", orjson.dumps(
        {"type": "message_start", "message": {"id": "msg_1", "model": "upstream-id"}}))
    assert b'"model":"claude-x"' in start and b"upstream-id" not in start
    delta = orjson.dumps({"type": "content_block_delta", "index": 0,
                          "delta": {"type": "text_delta", "text": "hi"}})
    assert relay.feed(b"content_block_delta", delta) == (
        b"event: content_block_delta\ndata: " + delta + b"\n\n")
    tail = relay.finish()
    assert tail.startswith(b"event: error\n") and relay.failed

    relay = PassthroughRelay(model="m")
    out = relay.feed(None, orjson.dumps({"error": {"message": "slow", "type": "api_error",
                                                   "code": "upstream_timeout"}}))
    assert orjson.loads(out.split(b"data: ")[1]) == {
        "type": "error", "error": {"type": "timeout_error", "message": "slow"}}
    assert relay.finish() == b""

    relay = PassthroughRelay(model="m")
    relay.feed(b"message_stop", b'{"type":"message_stop"}')
    assert relay.finish() == b"" and not relay.failed
