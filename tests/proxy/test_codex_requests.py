"""Requests shaped as Codex 0.171.0 sends them to `POST /v1/responses` (captured from
lai's side while the real `codex exec` ran against it, docs/clients.md), through the
openai SDK, against a real proxy in front of a fake upstream. The texts are ours; the
shape is Codex's: a developer message, `store: false`, `include`, `prompt_cache_key`,
`client_metadata`, a hosted web search tool, and tools grouped in a `namespace` (its
sub-agent tools), whose calls must come back with their namespace."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider

SESSION = "01a23551-4a7c-75b2-8012-75ec07548639"
HEADERS = {"originator": "codex_exec", "session-id": SESSION, "thread-id": SESSION,
           "x-client-request-id": SESSION, "x-codex-beta-features": "remote_compaction_v2",
           "x-codex-window-id": f"{SESSION}:0",
           "x-codex-turn-metadata": '{"session_id":"' + SESSION + '","request_kind":"turn"}',
           "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb"}
EXEC = {"type": "function", "name": "exec_command", "description": "Run a command.",
        "strict": False, "parameters": {
            "type": "object", "properties": {"cmd": {"type": "string"}},
            "required": ["cmd"], "additionalProperties": False}}
AGENTS = {"type": "namespace", "name": "multi_agent_v1",
          "description": "Tools for sub-agents.", "tools": [
              {"type": "function", "name": "spawn_agent", "description": "Start one.",
               "strict": False, "parameters": {"type": "object", "properties": {
                   "message": {"type": "string"}}, "required": ["message"]}},
              {"type": "function", "name": "wait_agent", "description": "Wait for them.",
               "strict": False, "parameters": {"type": "object", "properties": {
                   "targets": {"type": "array", "items": {"type": "string"}}},
                   "required": ["targets"]}}]}
TOOLS = [EXEC, AGENTS, {"type": "web_search", "external_web_access": False}]
INPUT = [{"type": "message", "role": "developer",
          "content": [{"type": "input_text", "text": "You are a coding agent."}]},
         {"type": "message", "role": "user",
          "content": [{"type": "input_text", "text": "wait for agent 7"}]}]
EXTRA = {"store": False, "include": ["reasoning.encrypted_content"],
         "prompt_cache_key": SESSION, "reasoning": {"summary": "auto"},
         "client_metadata": {"turn_id": "t1", "x-codex-window-id": f"{SESSION}:0"}}
CALL = {"id": "call_7", "name": "multi_agent_v1__wait_agent",
        "arguments": '{"targets": ["7"]}'}


@pytest.fixture
async def proxy(proxy_factory: Any, upstream: FakeUpstream) -> Any:
    return await proxy_factory([provider("box", upstream.url)], [model("coder", "box")])


def client(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="lai_unused",
                              max_retries=0, default_headers=HEADERS)


async def ask(c: openai.AsyncOpenAI, items: list[Any], streamed: bool) -> Any:
    """One Codex turn: the final response object."""
    args: dict[str, Any] = {"model": "coder", "input": items, "tools": TOOLS,
                            "tool_choice": "auto", "parallel_tool_calls": True,
                            "extra_body": EXTRA}
    if not streamed:
        return await c.responses.create(**args)
    async with c.responses.stream(**args) as stream:
        added = [e.item for e in [event async for event in stream]
                 if e.type == "response.output_item.added"]
        final = await stream.get_final_response()
    for item in added:
        if item.type == "function_call":  # announced with the client's names already
            assert (item.namespace, item.name) == ("multi_agent_v1", "wait_agent")
    return final


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_namespaced_tool_is_offered_called_and_continued(
    proxy: Any, upstream: FakeUpstream, streamed: bool
) -> None:
    c = client(proxy)
    upstream.script(Behaviour(tool_calls=[CALL]))
    first = await ask(c, INPUT, streamed)
    offered = upstream.requests[-1].body["tools"]
    assert [t["function"]["name"] for t in offered] == [
        "exec_command", "multi_agent_v1__spawn_agent", "multi_agent_v1__wait_agent"]
    assert offered[2]["function"]["description"] == (
        "(multi_agent_v1: Tools for sub-agents.) Wait for them.")
    assert offered[2]["function"]["parameters"] == AGENTS["tools"][1]["parameters"]
    [call] = first.output
    assert call.type == "function_call"
    assert (call.namespace, call.name, call.call_id) == ("multi_agent_v1", "wait_agent",
                                                          "call_7")
    assert call.arguments == '{"targets": ["7"]}'

    # Codex sends the call back as it got it, with the tool's output.
    upstream.script(Behaviour(content="Agent 7 is done."))
    echoed = call.model_dump(exclude_none=True)
    second = await ask(c, [*INPUT, echoed, {"type": "function_call_output",
                                            "call_id": "call_7", "output": "done"}], streamed)
    assert second.output_text == "Agent 7 is done."
    sent = upstream.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"] == [{"id": "call_7", "type": "function", "function": {
        "name": "multi_agent_v1__wait_agent", "arguments": '{"targets": ["7"]}'}}]
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_7", "content": "done"}


async def test_tool_choice_may_name_a_namespaced_tool(proxy: Any,
                                                      upstream: FakeUpstream) -> None:
    r = await proxy.http.post("/v1/responses", headers=HEADERS, json={
        "model": "coder", "input": "go", "tools": TOOLS, "tool_choice": {
            "type": "function", "name": "wait_agent", "namespace": "multi_agent_v1"}})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["tool_choice"] == {
        "type": "function", "function": {"name": "multi_agent_v1__wait_agent"}}


async def test_a_namespace_of_something_else_than_functions_is_a_400(proxy: Any) -> None:
    bad = {**AGENTS, "tools": [{"type": "web_search"}]}
    r = await proxy.http.post("/v1/responses", json={"model": "coder", "input": "go",
                                                     "tools": [bad]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tools[0].tools[0].type"
    r = await proxy.http.post("/v1/responses", json={"model": "coder", "input": "go",
                                                     "tools": [{**AGENTS, "tools": None}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].tools"
