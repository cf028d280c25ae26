"""The openai SDK's Responses client against the real proxy in front of fake upstreams."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from lai.store.requests import get_request, requests_between
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


async def _proxy(proxy_factory: Any, upstream: FakeUpstream, **server: Any) -> Any:
    return await proxy_factory([provider("box", upstream.url)],
                               [model("small", "box", upstream_id="Org/Small-GGUF")], **server)


def _client(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="none", max_retries=0)


async def test_create_answers_text_with_the_requested_model_and_usage(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(content="Hello there friend"))
    async with _client(proxy) as client:
        resp = await client.responses.create(model="small", input="Say hello",
                                             instructions="Be brief.")
    assert resp.status == "completed"
    assert resp.output_text == "Hello there friend"
    assert resp.model == "small"
    assert resp.usage is not None and resp.usage.output_tokens == 3
    sent = upstream.requests[-1].body
    assert sent["model"] == "Org/Small-GGUF"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Say hello"}]


async def test_stream_gives_the_event_grammar_and_the_final_response(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(content="one two three"))
    async with _client(proxy) as client:
        async with client.responses.stream(model="small", input="count") as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 3
    assert kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added",
                 "response.output_text.done", "response.content_part.done",
                 "response.output_item.done"):
        assert kind in kinds
    assert final.output_text == "one two three"
    assert final.model == "small"
    assert final.usage is not None and final.usage.output_tokens == 3


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_round_trip_arrives_intact(
    proxy_factory: Any, upstream: FakeUpstream, streamed: bool
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    arguments = '{"city": "Lisbon", "units": "metric"}'
    upstream.script(
        Behaviour(tool_calls=[{"id": "call_abc", "name": "get_weather", "arguments": arguments}],
                  chunks=4),
        Behaviour(content="It is sunny."),
    )
    async with _client(proxy) as client:
        if streamed:
            async with client.responses.stream(model="small", input="Weather in Lisbon?",
                                               tools=[WEATHER]) as stream:
                deltas = [e.delta async for e in stream
                          if e.type == "response.function_call_arguments.delta"]
                first = await stream.get_final_response()
            assert len(deltas) == 4 and "".join(deltas) == arguments
        else:
            first = await client.responses.create(model="small", input="Weather in Lisbon?",
                                                  tools=[WEATHER])
        [call] = first.output
        assert call.type == "function_call"
        assert (call.name, call.call_id, call.arguments) == ("get_weather", "call_abc", arguments)
        second = await client.responses.create(
            model="small", previous_response_id=first.id, tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": "call_abc",
                    "output": '{"sky": "sunny"}'}],
        )
    assert second.output_text == "It is sunny."
    messages = upstream.requests[-1].body["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Lisbon?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"] == [{"id": "call_abc", "type": "function", "function": {
        "name": "get_weather", "arguments": arguments}}]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_abc",
                           "content": '{"sky": "sunny"}'}
    assert upstream.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"


async def test_a_custom_tool_comes_back_as_a_custom_tool_call(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    patch = "*** Begin Patch\n*** End Patch\n"
    upstream.script(Behaviour(tool_calls=[{"id": "call_p", "name": "apply_patch",
                                           "arguments": json.dumps({"input": patch})}]))
    tool = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    async with _client(proxy) as client:
        async with client.responses.stream(model="small", input="edit",
                                           tools=[tool]) as stream:  # type: ignore[list-item]
            async for _ in stream:
                pass
            final = await stream.get_final_response()
    [call] = final.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.call_id, call.input) == ("apply_patch", "call_p", patch)
    sent = upstream.requests[-1].body["tools"][0]["function"]
    assert sent["parameters"]["required"] == ["input"]
    assert "lark grammar" in sent["description"]


async def test_get_returns_a_stored_response_and_store_false_keeps_none(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    async with _client(proxy) as client:
        kept = await client.responses.create(model="small", input="hi")
        again = await client.responses.retrieve(kept.id)
        assert again.id == kept.id and again.output_text == kept.output_text
        assert again.model == "small"
        gone = await client.responses.create(model="small", input="hi", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(gone.id)
        with pytest.raises(openai.NotFoundError) as err:
            await client.responses.create(model="small", input="more",
                                          previous_response_id=gone.id)
        assert err.value.body["code"] == "not_found"  # type: ignore[index]
        assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
        await client.responses.delete(kept.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(kept.id)


async def test_a_codex_like_request_gets_a_valid_streamed_answer(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(content="Done."))
    body = {
        "model": "small",
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "<permissions>sandboxed</permissions>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "list the files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Run a command.",
             "strict": False, "parameters": {"type": "object", "properties": {
                 "command": {"type": "array", "items": {"type": "string"}}},
                 "required": ["command"], "additionalProperties": False}},
            {"type": "custom", "name": "apply_patch", "description": "Patch files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199-session",
    }
    async with proxy.http.stream("POST", "/v1/responses", json=body,
                                 headers={"accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in resp.aiter_lines()]
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Done."
    sent = upstream.requests[-1].body
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are Codex, a coding agent.\n\n<permissions>sandboxed</permissions>"}
    assert [t["function"]["name"] for t in sent["tools"]] == ["shell", "apply_patch"]
    assert sent["parallel_tool_calls"] is False
    assert "reasoning" not in sent and "include" not in sent
    r = await proxy.http.get(f"/v1/responses/{events[-1]['response']['id']}")
    assert r.status_code == 404  # store: false
    # The session's prompt_cache_key names the conversation its requests are recorded in.
    await proxy.runtime.recorder.flush()
    conv = await proxy.http.get("/v1/conversations/0199-session")
    assert conv.status_code == 200
    assert conv.json()["messages"][-1]["content"] == "Done."


@pytest.mark.parametrize(("item", "named"), [
    ({"type": "item_reference", "id": "msg_1"}, "item_reference"),
    ({"type": "computer_call", "call_id": "c", "action": {}}, "computer_call"),
    ({"type": "bogus"}, "bogus"),
])
async def test_items_lai_cannot_map_are_a_400_naming_them(
    proxy_factory: Any, upstream: FakeUpstream, item: dict[str, Any], named: str
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    r = await proxy.http.post("/v1/responses", json={"model": "small", "input": [item]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and named in err["message"]
    assert err["param"] == "input[0].type"
    assert upstream.chat_count == 0


async def test_bad_bodies_get_openai_shaped_errors(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    for body, status in ((b"not json", 400), (b"[]", 400), (b'{"model": "small"}', 400),
                         (b'{"model": "nope", "input": "x"}', 404),
                         (b'{"model": "small", "input": "x", "stream": "yes"}', 400),
                         (b'{"model": "small", "input": "x", "background": true}', 400)):
        r = await proxy.http.post("/v1/responses", content=body,
                                  headers={"content-type": "application/json"})
        assert r.status_code == status, body
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    assert (await proxy.http.get("/v1/responses")).status_code == 405
    assert upstream.chat_count == 0


async def test_a_truncated_upstream_stream_ends_in_response_failed(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(content="partial answer here", finish_reason=""))
    async with _client(proxy) as client:
        async with client.responses.stream(model="small", input="x") as stream:
            kinds = [e.type async for e in stream]
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds


async def test_responses_are_recorded_like_chat_completions(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(content="recorded answer"))
    r = await proxy.http.post("/v1/responses", json={"model": "small", "input": "remember me"},
                              headers={"X-Conversation-ID": "conv-resp-1"})
    assert r.status_code == 200 and r.headers["x-provider"] == "box"
    second = await proxy.http.post("/v1/responses", json={
        "model": "small", "input": "and again", "previous_response_id": r.json()["id"]})
    assert second.status_code == 200
    assert second.headers["x-conversation-id"] == "conv-resp-1"
    store = proxy.runtime.store
    await proxy.runtime.recorder.flush()
    conv = await proxy.http.get("/v1/conversations/conv-resp-1")
    contents = [m["content"] for m in conv.json()["messages"]]
    assert contents[:3] == ["remember me", "recorded answer", "and again"]
    rows = [get_request(store, rid) for rid in await _request_ids(proxy)]
    assert {row.endpoint for row in rows if row} == {"responses"}
    assert all(row.status == "success" and row.model_id == "small" for row in rows if row)


async def _request_ids(proxy: Any) -> list[str]:
    rows = requests_between(proxy.runtime.store, datetime.now(UTC) - timedelta(hours=1))
    return [r.request_id for r in rows]


async def test_a_client_that_leaves_mid_stream_frees_the_slot_and_cancels_upstream(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(chunks=200, delay=0.05))
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        async with http.stream("POST", "/v1/responses",
                               json={"model": "small", "input": "long", "stream": True}) as r:
            async for line in r.aiter_lines():
                if "output_text.delta" in line:
                    break
    await upstream.wait_for_async(lambda: upstream.disconnects == 1)
    for _ in range(200):
        if proxy.engine.provider("box").active_requests == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.engine.provider("box").active_requests == 0
    upstream.reset_stats()
    async with _client(proxy) as client:
        results = await asyncio.gather(*(client.responses.create(model="small", input="x")
                                         for _ in range(4)))
    assert all(r.status == "completed" for r in results)


async def test_responses_over_an_anthropic_provider_with_a_streamed_tool_call(
    proxy_factory: Any
) -> None:
    with FakeAnthropic(api_key="sk-test") as fake:
        fake.tool_calls = [("get_weather", {"city": "Oslo"})]
        proxy = await proxy_factory(
            [provider("claude", fake.url, type="anthropic", auth_type="api_key",
                      auth_secret="sk-test")],
            [model("sonnet", "claude", upstream_id="claude-test-1")])
        async with _client(proxy) as client:
            async with client.responses.stream(model="sonnet", input="Weather in Oslo?",
                                               tools=[WEATHER]) as stream:
                async for _ in stream:
                    pass
                final = await stream.get_final_response()
        calls = [o for o in final.output if o.type == "function_call"]
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [
            ("get_weather", {"city": "Oslo"})]
        assert final.model == "sonnet"
        assert fake.message_requests[-1].body["tools"][0]["name"] == "get_weather"


async def test_a_reasoning_models_thinking_reaches_the_sdk_as_a_reasoning_item(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    upstream.script(Behaviour(reasoning=["First", " think", " it", " through."],
                              content="Forty-two."))
    async with _client(proxy) as client:
        async with client.responses.stream(model="small", input="Meaning of life?") as stream:
            thoughts = [e.delta async for e in stream
                        if e.type == "response.reasoning_text.delta"]
            final = await stream.get_final_response()
    assert "".join(thoughts) == "First think it through."
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output_text == "Forty-two."


async def test_odd_request_targets_for_responses_are_never_a_500(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await _proxy(proxy_factory, upstream)
    port = int(proxy.url.rsplit(":", 1)[1])
    body = b'{"model": "small", "input": "hi"}'
    statuses = []
    for target in (f"http://127.0.0.1:{port}/v1/responses", "//v1/responses"):
        raw = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
               f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        statuses.append(int(answer.split(b" ", 2)[1]))
    # Absolute form is the same path (as Quart reads it); a doubled slash is redirected.
    assert statuses[0] == 200 and statuses[1] < 500, statuses
