"""What a Claude Code session leaves in lai's records: each of its threads (the main
agent loop, the title request beside it) is one conversation, and the access log names
the provider that answered. Requests shaped as Claude Code 2.1.197 sends them
(tests/proxy/claude_code_shapes.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider
from tests.proxy.claude_code_shapes import (
    AGENTS,
    HEADERS,
    SESSION,
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


async def test_a_sessions_main_thread_is_one_conversation_and_its_title_another(
    local: Any,
) -> None:
    proxy, upstream = local
    c = client(proxy)
    upstream.script(Behaviour(tool_calls=[{"id": "call_1", "name": "Bash",
                                           "arguments": '{"command": "pytest -q"}'}]))
    first, conv1 = await main_turn(c, [USER_TURN, AGENTS])
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "Bash" and use.input == {"command": "pytest -q"}

    # The title request Claude Code sends meanwhile, in the same session.
    upstream.script(Behaviour(content=['{"title": "Run the tests"}']))
    async with c.messages.stream(
        model="claude-opus-4-8", max_tokens=64000, system=system()[:2],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "<session>\nrun the tests\n</session>"}]}],
        extra_body=extra(output_config={"effort": "high", "format": {
            "type": "json_schema", "schema": {
                "type": "object", "properties": {"title": {"type": "string"}},
                "required": ["title"], "additionalProperties": False}}},
            thinking={"type": "disabled"})) as stream:
        title = await stream.get_final_message()
    assert json.loads(title.content[0].text) == {"title": "Run the tests"}

    upstream.script(Behaviour(content="All 12 tests pass."))
    history = [USER_TURN, AGENTS,
               {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                 for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": "12 passed", "is_error": False}]}]
    second, conv2 = await main_turn(c, history)
    assert second.content[0].text == "All 12 tests pass."
    assert conv1 == conv2 and conv1.startswith(SESSION + ".")

    r = await proxy.http.get(f"/v1/conversations/{conv1}")
    assert r.status_code == 200, r.text
    stored = r.json()["messages"]
    assert [m["role"] for m in stored] == ["system", "user", "system", "assistant", "tool",
                                           "assistant"]
    assert stored[4]["content"] == "12 passed"
    assert stored[5]["content"] == "All 12 tests pass."
    titles = await proxy.http.get("/v1/conversations", params={"q": "session"})
    [other] = [conv for conv in titles.json()["data"] if conv["id"] != conv1]
    assert other["id"].startswith(SESSION + ".") and other["message_count"] == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_the_access_log_names_the_provider_that_answered(
    local: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="lai.access")
    proxy, _ = local
    r = await proxy.http.post("/v1/messages?beta=true", headers=HEADERS, json={
        "model": "claude-opus-4-8", "max_tokens": 50, "stream": stream,
        "messages": [USER_TURN]})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    for _ in range(200):
        lines = [rec.getMessage() for rec in caplog.records
                 if rec.name == "lai.access" and rid in rec.getMessage()]
        if lines:
            break
        await asyncio.sleep(0.01)
    [line] = lines
    assert line.startswith("POST /v1/messages 200 ") and "provider=box " in line
