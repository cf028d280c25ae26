"""The agent fake answers as a model with tools would: a call of the client's own shell
tool, shaped by that tool's schema, then an answer from the tool's result."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes.agent import PLAIN_ANSWER, TOOL_ANSWER, agent_behaviour
from tests.fakes.upstream import FakeUpstream


def tool(name: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": props, "required": required}}}


CLAUDE_BASH = tool("Bash", {"command": {"type": "string"}, "description": {"type": "string"}},
                   ["command"])
CODEX_EXEC = tool("exec_command", {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
                  ["cmd"])
ARGV_SHELL = tool("shell", {"command": {"type": "array", "items": {"type": "string"}}},
                  ["command"])
ASK = [{"role": "system", "content": "be useful"},
       {"role": "user", "content": [{"type": "text", "text": "please run `echo hi`"}]},
       {"role": "system", "content": "context added after the user's message"}]


def called(tools: list[Any]) -> tuple[str, Any]:
    b = agent_behaviour({"messages": ASK, "tools": tools})
    assert b is not None and b.tool_calls is not None
    [call] = b.tool_calls
    return call["name"], json.loads(call["arguments"])


def test_the_shell_tool_is_called_with_arguments_of_its_own_shape() -> None:
    assert called([CLAUDE_BASH]) == ("Bash", {
        "command": "echo hi", "description": "Run the command the user asked for"})
    assert called([tool("Read", {}, []), CODEX_EXEC]) == ("exec_command", {"cmd": "echo hi"})
    assert called([ARGV_SHELL]) == ("shell", {"command": ["bash", "-lc", "echo hi"]})


def test_text_without_a_tool_and_an_answer_after_a_tool_result() -> None:
    b = agent_behaviour({"messages": ASK})
    assert b is not None and b.content == PLAIN_ANSWER
    after = [*ASK, {"role": "assistant", "content": None, "tool_calls": []},
             {"role": "tool", "tool_call_id": "c", "content": "hi\n"}]
    b = agent_behaviour({"messages": after, "tools": [CLAUDE_BASH]})
    assert b is not None and b.content == TOOL_ANSWER + "hi"


async def test_a_responder_answers_each_request_and_a_script_still_comes_first() -> None:
    with FakeUpstream() as fake:
        fake.responder = agent_behaviour
        async with httpx.AsyncClient(base_url=fake.url, timeout=5) as c:
            r = await c.post("/v1/chat/completions", json={
                "model": "m", "messages": ASK, "tools": [CODEX_EXEC]})
            [call] = r.json()["choices"][0]["message"]["tool_calls"]
            assert call["function"]["name"] == "exec_command"
            assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
            fake.script(fake.default)
            r = await c.post("/v1/chat/completions", json={
                "model": "m", "messages": ASK, "tools": [CODEX_EXEC]})
            assert r.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
