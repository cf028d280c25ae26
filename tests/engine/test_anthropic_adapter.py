"""The Anthropic adapter: OpenAI chat <-> Anthropic Messages, and through the real proxy.

Unit tests feed realistic payloads (the shapes of the Messages API docs and of recorded
streams); the end-to-end tests run the real proxy against `tests/fakes/anthropic.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters import adapter_for
from lai.engine.adapters.anthropic import AnthropicAdapter, AnthropicStreamParser
from lai.engine.sse import SSEDecoder
from lai.errors import InvalidRequest
from tests.fakes.anthropic import FakeAnthropic
from tests.harness import model, provider

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
       "AAAABJRU5ErkJggg==")

PROVIDER = ProviderConfig.model_validate({
    "id": "claude", "type": "anthropic", "endpoint": "https://api.anthropic.com/",
    "auth_type": "bearer", "auth_secret": "sk-ant-123"})
MODEL = ModelConfig.model_validate({"id": "sonnet", "provider_id": "claude",
                                    "upstream_id": "claude-sonnet-4-5", "max_tokens": 2048})
WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def translate(body: dict[str, Any], stream: bool = False) -> tuple[dict[str, Any], Any]:
    req = AnthropicAdapter().chat_request(PROVIDER, MODEL, body, stream)
    return orjson.loads(req.content), req


# ----------------------------------------------------------------- request translation


def test_agent_conversation_becomes_a_messages_request() -> None:
    body = {
        "model": "sonnet",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Oslo? Also, what is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg",
                                                    "detail": "high"}},
            ]},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
            {"role": "tool", "tool_call_id": "call_2",
             "content": [{"type": "text", "text": "4 C, snow"}]},
            {"role": "user", "content": "Which is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "temperature": 1.4,
        "top_p": 0.9,
        "stop": "END",
        "user": "alice",
        "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
    }
    sent, req = translate(body, stream=True)

    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-123"  # although auth_type says bearer
    assert "authorization" not in req.headers
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["accept"] == "text/event-stream"
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["system"] == "You are terse.\n\nUse metric units."
    assert sent["max_tokens"] == 300
    assert sent["temperature"] == 1.0  # Anthropic's ceiling
    assert "top_p" not in sent  # newer Claude models refuse it beside temperature
    assert sent["stop_sequences"] == ["END"]
    assert sent["stream"] is True
    assert sent["metadata"] == {"user_id": "alice"}
    assert sent["tools"] == [{
        "name": "get_weather", "description": "Current weather for a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    for key in ("response_format", "stream_options", "stop", "user", "parallel_tool_calls"):
        assert key not in sent
    assert sent["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Paris and Oslo? Also, what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Oslo"}},
        ]},
        # Both tool results and the next question in one user turn, results first.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C, sunny"},
            {"type": "tool_result", "tool_use_id": "call_2",
             "content": [{"type": "text", "text": "4 C, snow"}]},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]


def test_plain_request_defaults_max_tokens_to_the_model_and_sends_no_extras() -> None:
    prov = ProviderConfig.model_validate({"id": "claude", "type": "anthropic",
                                          "endpoint": "http://gw.local/v1"})
    req = AnthropicAdapter().chat_request(prov, MODEL, {
        "model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}, False)
    sent = orjson.loads(req.content)
    assert req.url == "http://gw.local/v1/messages"  # a pasted /v1 is tolerated
    assert "x-api-key" not in req.headers and "accept" not in req.headers
    assert sent == {"model": "claude-sonnet-4-5", "max_tokens": 2048,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_top_p_is_sent_when_it_is_the_only_sampling_knob() -> None:
    sent, _ = translate({"model": "sonnet", "top_p": 0.8, "top_k": 40,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert (sent["top_p"], sent["top_k"]) == (0.8, 40)
    assert "temperature" not in sent


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {"model": "sonnet", "tools": [WEATHER_TOOL],
                            "messages": [{"role": "user", "content": "weather?"}]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    sent, _ = translate(body)
    assert sent.get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    sent, _ = translate({"model": "sonnet", "tool_choice": "auto",
                         "messages": [{"role": "user", "content": "hi"}]})
    assert "tools" not in sent and "tool_choice" not in sent


@pytest.mark.parametrize(("body_change", "param"), [
    ({"n": 2}, "n"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "tool", "content": "no id"}]}, "messages[0]"),
])
def test_untranslatable_requests_are_a_clear_400(body_change: dict[str, Any], param: str) -> None:
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], **body_change}
    with pytest.raises(InvalidRequest) as info:
        translate(body)
    assert info.value.status == 400
    assert info.value.param == param
    assert "anthropic" in info.value.message


def test_probe_is_get_models_with_the_key() -> None:
    adapter = adapter_for(PROVIDER)
    assert isinstance(adapter, AnthropicAdapter)
    url, headers = adapter.probe(PROVIDER)
    assert url == "https://api.anthropic.com/v1/models"
    assert headers == {"x-api-key": "sk-ant-123", "anthropic-version": "2023-06-01"}


# ----------------------------------------------------------------- non-streamed answers


def message(content: list[dict[str, Any]], stop: str = "end_turn",
            usage: dict[str, int] | None = None) -> bytes:
    return orjson.dumps({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": content, "stop_reason": stop,
        "stop_sequence": None, "usage": usage or {"input_tokens": 12, "output_tokens": 6}})


def test_text_and_tool_use_answer_becomes_a_chat_completion() -> None:
    raw = message([
        {"type": "text", "text": "Let me check "},
        {"type": "text", "text": "the weather."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"city": "San Francisco", "unit": "celsius"}},
    ], stop="tool_use", usage={"input_tokens": 100, "cache_read_input_tokens": 400,
                               "cache_creation_input_tokens": 20, "output_tokens": 30})
    parsed = AnthropicAdapter().parse_completion(raw, "claude")
    body = orjson.loads(parsed.body)
    assert body["object"] == "chat.completion"
    assert body["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert body["model"] == "claude-sonnet-4-5-20250929"
    assert isinstance(body["created"], int)
    assert body["provider"] == "claude"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Let me check the weather."
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "San Francisco",
                                                           "unit": "celsius"}
    assert body["usage"] == {"prompt_tokens": 520, "completion_tokens": 30, "total_tokens": 550}
    assert parsed.usage is not None and parsed.usage.total_tokens == 550
    assert parsed.finish_reason == "tool_calls"
    assert parsed.message == choice["message"]


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_stop_reasons_map_to_finish_reasons(stop: str, finish: str) -> None:
    parsed = AnthropicAdapter().parse_completion(
        message([{"type": "text", "text": "ok"}], stop=stop), "claude")
    assert parsed.finish_reason == finish
    assert "tool_calls" not in orjson.loads(parsed.body)["choices"][0]["message"]


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b"[]",
                                 b'{"type":"error","error":{"type":"api_error","message":"x"}}'])
def test_unusable_200_body_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        AnthropicAdapter().parse_completion(raw, "claude")


def test_error_message_reads_anthropic_error_bodies() -> None:
    adapter = AnthropicAdapter()
    assert adapter.error_message(
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    ) == "Overloaded (overloaded_error)"
    assert adapter.error_message(b"Bad Gateway") == "Bad Gateway"
    assert adapter.error_message(b"") == "(empty body)"


# ----------------------------------------------------------------- streamed answers


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps({"type": name, **payload}))


TEXT_THEN_TOOL = b"".join([
    sse("message_start", {"message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 472, "output_tokens": 2}}}),
    sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    sse("ping", {}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Okay"}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                      "text": ", checking."}}),
    sse("content_block_stop", {"index": 0}),
    sse("content_block_start", {"index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
        "input": {}}}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                      "partial_json": ""}}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                      "partial_json": '{"city": "San'}}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                      "partial_json": ' Francisco"}'}}),
    sse("content_block_stop", {"index": 1}),
    sse("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"output_tokens": 89}}),
    sse("message_stop", {}),
])


def run_stream(raw: bytes, wants_usage: bool, piece: int = 7
               ) -> tuple[AnthropicStreamParser, list[dict[str, Any]], bytes]:
    """Feed ``raw`` in ``piece``-byte slices, as a network would; parse what comes out."""
    parser = AnthropicAdapter().stream_parser("claude", wants_usage)
    decoder = SSEDecoder()
    out = b""
    for i in range(0, len(raw), piece):
        for event, data in decoder.feed(raw[i:i + piece]):
            out += parser.feed(event, data) or b""
    out += parser.end()
    datas = [line[6:] for line in out.decode().split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    return parser, [orjson.loads(d) for d in datas[:-1]], out


def deltas(chunks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in chunks:
        if c["choices"]:
            yield c["choices"][0]["delta"]


def test_stream_becomes_openai_chunks_with_tool_call_deltas() -> None:
    parser, chunks, _ = run_stream(TEXT_THEN_TOOL, wants_usage=False)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["provider"] == "claude" for c in chunks)
    assert all(c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U" for c in chunks)
    assert all(c["model"] == "claude-sonnet-4-5-20250929" for c in chunks)
    d = list(deltas(chunks))
    assert d[0] == {"role": "assistant", "content": ""}
    assert [x["content"] for x in d if x.get("content")] == ["Okay", ", checking."]
    calls = [x["tool_calls"][0] for x in d if "tool_calls" in x]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city": "San Francisco"}'
    assert all(c["index"] == 0 for c in calls)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["choices"] for c in chunks)  # no usage-only chunk: not asked for

    state = parser.state
    assert state.done and state.error is None
    assert state.finish_reason == "tool_calls"
    assert "".join(state.content) == "Okay, checking."
    assert state.message()["tool_calls"] == [{
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "San Francisco"}'}}]
    assert state.usage is not None
    assert (state.usage.prompt_tokens, state.usage.completion_tokens) == (472, 89)
    assert state.content_events == 5


def test_usage_chunk_only_when_the_client_asked() -> None:
    _, chunks, _ = run_stream(TEXT_THEN_TOOL, wants_usage=True)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 472, "completion_tokens": 89,
                                   "total_tokens": 561}
    assert chunks[-1]["provider"] == "claude"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_second_tool_and_parameterless_tool_get_their_own_index_and_valid_json() -> None:
    raw = b"".join([
        sse("message_start", {"message": {"id": "msg_1", "model": "m", "usage": {
            "input_tokens": 5, "output_tokens": 1}}}),
        sse("content_block_start", {"index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_a", "name": "now", "input": {}}}),
        sse("content_block_stop", {"index": 0}),
        sse("content_block_start", {"index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}}}),
        sse("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                          "partial_json": '{"city":"Oslo"}'}}),
        sse("content_block_stop", {"index": 1}),
        sse("message_delta", {"delta": {"stop_reason": "tool_use"},
                              "usage": {"output_tokens": 20}}),
        sse("message_stop", {}),
    ])
    parser, _, _ = run_stream(raw, wants_usage=False, piece=1000)
    calls = parser.state.message()["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("toolu_a", "now", "{}"), ("toolu_b", "get_weather", '{"city":"Oslo"}')]


def test_error_event_before_content_sends_no_role_chunk_and_sets_error() -> None:
    raw = b"".join([
        sse("message_start", {"message": {"id": "msg_1", "model": "m",
                                          "usage": {"input_tokens": 5}}}),
        sse("ping", {}),
        sse("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])
    parser, chunks, _ = run_stream(raw, wants_usage=False)
    assert parser.state.error == "Overloaded"
    assert not parser.state.done and parser.state.content_events == 0
    assert chunks == [{"error": {"message": "Overloaded", "type": "overloaded_error",
                                 "code": None, "param": None}, "provider": "claude"}]


# ----------------------------------------------------------------- through the real proxy


@pytest.fixture
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-test") as fake:
        yield fake


def claude(fake: FakeAnthropic, **kw: Any) -> dict[str, Any]:
    return provider("claude", fake.url, type="anthropic", auth_type="api_key",
                    auth_secret="sk-test", **kw)


CLAUDE_MODEL = model("sonnet", "claude", upstream_id="claude-test-1", max_tokens=1024)


def sse_datas(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


async def test_proxy_answers_openai_shaped_from_anthropic(proxy_factory, anthropic_fake):
    proxy = await proxy_factory([claude(anthropic_fake)], [CLAUDE_MODEL])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "hello there"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "claude"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello from the fake Claude."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert r.headers["X-Provider"] == "claude"

    seen = anthropic_fake.message_requests[-1]
    assert seen.headers["x-api-key"] == "sk-test"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body["model"] == "claude-test-1"
    assert seen.body["system"] == "Be brief."
    assert seen.body["max_tokens"] == 1024


async def test_proxy_streams_anthropic_as_openai_chunks(proxy_factory, anthropic_fake):
    anthropic_fake.tool_calls = [("get_weather", {"city": "Paris"})]
    proxy = await proxy_factory([claude(anthropic_fake)], [CLAUDE_MODEL])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "stream": True, "tools": [WEATHER_TOOL],
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "weather in Paris?"}]})
    assert r.status_code == 200, r.text
    datas = sse_datas(r.text)
    assert datas[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in datas[:-1]]
    assert all(c["provider"] == "claude" for c in chunks)
    d = list(deltas(chunks))
    assert d[0]["role"] == "assistant"
    assert "".join(x.get("content") or "" for x in d) == "Hello from the fake Claude."
    args = "".join(t["function"].get("arguments", "") for x in d for t in x.get("tool_calls", ()))
    assert orjson.loads(args) == {"city": "Paris"}
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 10  # 5 words + 5 for the tool call
    seen = anthropic_fake.message_requests[-1]
    assert seen.body["stream"] is True
    assert seen.headers["x-api-key"] == "sk-test"
    assert seen.body["tools"][0]["name"] == "get_weather"


async def test_overloaded_anthropic_is_retried_once_then_fails_over(
    proxy_factory, anthropic_fake, upstream
):
    anthropic_fake.status = 529
    proxy = await proxy_factory(
        [claude(anthropic_fake, priority=1), provider("box", upstream.url, priority=2)],
        [CLAUDE_MODEL, model("small", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["provider"] == "box"
    assert len(anthropic_fake.message_requests) == 2  # the first try and one retry
    assert upstream.chat_count == 1


async def test_rate_limited_stream_fails_over_too(proxy_factory, anthropic_fake, upstream):
    anthropic_fake.status = 429
    proxy = await proxy_factory(
        [claude(anthropic_fake, priority=1), provider("box", upstream.url, priority=2)],
        [CLAUDE_MODEL, model("small", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    chunks = [orjson.loads(d) for d in sse_datas(r.text)[:-1]]
    assert {c["provider"] for c in chunks} == {"box"}
    assert len(anthropic_fake.message_requests) == 2


async def test_stream_error_before_content_fails_over(proxy_factory, anthropic_fake, upstream):
    anthropic_fake.stream_error = True
    proxy = await proxy_factory(
        [claude(anthropic_fake, priority=1), provider("box", upstream.url, priority=2)],
        [CLAUDE_MODEL, model("small", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    chunks = [orjson.loads(d) for d in sse_datas(r.text)[:-1]]
    assert {c["provider"] for c in chunks} == {"box"}
    assert not any("error" in c for c in chunks)
    assert len(anthropic_fake.message_requests) == 1  # an error event is not retried


async def test_untranslatable_request_is_a_400_and_frees_the_slot(proxy_factory, anthropic_fake):
    proxy = await proxy_factory([claude(anthropic_fake, max_concurrent=1)], [CLAUDE_MODEL])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "n": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == "n"
    assert anthropic_fake.message_requests == []
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


async def test_health_probe_lists_models_with_the_key(proxy_factory, anthropic_fake):
    proxy = await proxy_factory([claude(anthropic_fake)], [CLAUDE_MODEL])
    snap = await proxy.engine.check("claude")
    assert snap.status == "healthy"
    probe = anthropic_fake.requests[-1]
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert probe.headers["x-api-key"] == "sk-test"
    assert probe.headers["anthropic-version"] == "2023-06-01"
    assert anthropic_fake.message_requests == []  # a check spends no tokens

    # The start-up probe runs in the background: let it land before the key changes, so
    # the one check below is the only failure.
    for _ in range(500):
        if sum(r.path == "/v1/models" for r in anthropic_fake.requests) >= 2:
            break
        await asyncio.sleep(0.01)
    anthropic_fake.api_key = "sk-rotated"  # the configured key no longer works
    snap = await proxy.engine.check("claude")
    assert snap.consecutive_failures == 1
    assert "401" in (snap.last_error or "")


async def test_openai_sdk_streams_through_lai_from_anthropic(proxy_factory, anthropic_fake):
    proxy = await proxy_factory([claude(anthropic_fake)], [CLAUDE_MODEL])
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="sonnet", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "say hello"}])
        text, finish, usage = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
    finally:
        await client.close()
    assert text == "Hello from the fake Claude."
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 5
