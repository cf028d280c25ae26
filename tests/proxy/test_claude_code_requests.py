"""Claude Code's requests (tests/proxy/claude_code_shapes.py) through the anthropic SDK,
against a real proxy in front of fake upstreams: what reaches a local model (the system
message after the user's, no billing block, a JSON schema for structured outputs) and
what Claude Code gets back."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider
from tests.proxy.claude_code_shapes import (
    AGENTS,
    HEADERS,
    USER_TURN,
    client,
    extra,
    main_turn,
    system,
)


@pytest.fixture
async def local(proxy_factory: Any, upstream: FakeUpstream) -> Any:
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("coder", "box", max_tokens=16384,
                                       aliases=["claude-*"])])
    return proxy, upstream


async def test_a_system_message_after_the_users_is_answered_and_sent_in_place(
    local: Any,
) -> None:
    proxy, upstream = local
    upstream.script(Behaviour(content="Running them now."))
    final, _ = await main_turn(client(proxy), [USER_TURN, AGENTS])
    assert final.content[0].type == "text"
    assert final.content[0].text == "Running them now."
    assert final.model == "claude-opus-4-8"
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system"]
    assert sent[2] == {"role": "system", "content": AGENTS["content"]}
    assert "run the tests" in sent[1]["content"]
    assert upstream.requests[-1].body["max_tokens"] == 16384


async def test_system_messages_in_a_row_are_joined_and_odd_roles_still_refused(
    local: Any,
) -> None:
    proxy, upstream = local
    r = await proxy.http.post("/v1/messages", headers=HEADERS, json={
        "model": "coder", "max_tokens": 50, "system": "Top.",
        "messages": [{"role": "system", "content": [{"type": "text", "text": "More."}]},
                     {"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["messages"][0] == {"role": "system",
                                                         "content": "Top.\n\nMore."}
    r = await proxy.http.post("/v1/messages", json={
        "model": "coder", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "system", "content": [{"type": "image"}]}]})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "messages[1].content[0]" in r.json()["error"]["message"]


async def test_the_billing_block_never_reaches_a_local_model(local: Any) -> None:
    """Its hash differs per session; at the top of the prompt it would defeat the local
    server's cache of the whole system prompt for every new session."""
    proxy, upstream = local
    c = client(proxy)
    for billing in ("cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;",
                    "cc_version=2.1.197.3bb; cc_entrypoint=sdk-cli;"):
        await main_turn(c, [USER_TURN], system=system(billing))
    first, second = (r.body["messages"][0] for r in upstream.requests[-2:])
    assert first == second == {"role": "system",
                               "content": "You are a coding agent.\n\nUse the tools you are given."}


async def test_the_billing_block_is_dropped_for_a_messages_server_not_for_anthropic(
    proxy_factory: Any,
) -> None:
    with FakeAnthropic(api_key=None) as local, FakeAnthropic() as cloud:  # type: ignore[arg-type]
        proxy = await proxy_factory(
            [provider("llama", local.url, messages_api=True, health_check_path="/v1/models"),
             provider("claude", cloud.url, type="anthropic", auth_type="api_key",
                      auth_secret="sk-test")],
            [model("qwen", "llama"), model("sonnet", "claude", upstream_id="claude-x")])
        c = client(proxy)
        for name in ("qwen", "sonnet"):
            async with c.messages.stream(model=name, max_tokens=100, system=system(),
                                         messages=[USER_TURN, AGENTS],
                                         extra_body=extra()) as stream:
                await stream.get_final_message()
        [to_local] = local.message_requests
        [to_cloud] = cloud.message_requests
    assert [b["text"] for b in to_local.body["system"]] == [
        "You are a coding agent.", "Use the tools you are given."]
    assert to_local.body["messages"][1] == AGENTS  # passed through as sent
    assert to_cloud.body["system"] == system()


async def test_an_output_format_becomes_a_json_schema_response_format(local: Any) -> None:
    proxy, upstream = local
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    for body in ({"output_config": {"effort": "low", "format": {"type": "json_schema",
                                                                  "schema": schema}}},
                 {"output_format": {"type": "json_schema", "schema": schema}}):
        upstream.script(Behaviour(content=['{"title": "x"}']))
        r = await proxy.http.post("/v1/messages", json={
            "model": "coder", "max_tokens": 50, "messages": [USER_TURN], **body})
        assert r.status_code == 200, r.text
        assert r.json()["content"][0]["text"] == '{"title": "x"}'
        assert upstream.requests[-1].body["response_format"] == {
            "type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    r = await proxy.http.post("/v1/messages", json={
        "model": "coder", "max_tokens": 50, "messages": [USER_TURN],
        "output_config": {"format": {"type": "regex", "pattern": "a+"}}})
    assert r.status_code == 400
    assert "output_config.format" in r.json()["error"]["message"]
    r = await proxy.http.post("/v1/messages", json={
        "model": "coder", "max_tokens": 50, "messages": [USER_TURN],
        "output_config": {"effort": "low"}})
    assert r.status_code == 200 and "response_format" not in upstream.requests[-1].body
