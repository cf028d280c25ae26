"""The Anthropic face's pure translation, both ways, from recorded sequences: Messages
requests -> OpenAI chat bodies, and OpenAI answers and chunk streams -> Anthropic
messages and events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from lai.errors import InvalidRequest
from lai.proxy.anthropic.answer import StreamTranslator, message
from lai.proxy.anthropic.request import chat_body

# ------------------------------------------------------------------ requests


def test_claude_code_like_request_becomes_a_plain_chat_body() -> None:
    body = {
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be careful."}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}]}],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user_abc_session_1"},
        "temperature": 1, "top_k": 40, "stop_sequences": ["</end>"],
    }
    chat = chat_body(body)
    assert chat == {
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "You are Claude Code.\n\nBe careful."},
            {"role": "user", "content": "<system-reminder>x</system-reminder>\n\nfix the bug"},
        ],
        "tools": [{"type": "function", "function": {"name": "Bash", "parameters": {
            "type": "object"}, "description": "run"}}],
        "tool_choice": "auto", "parallel_tool_calls": False,
        "temperature": 1, "stop": ["</end>"], "user": "user_abc_session_1",
    }


def test_tool_history_and_images_keep_their_order_and_ids() -> None:
    png = "iVBORw0KGgo="
    chat = chat_body({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": png}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
            {"type": "text", "text": "what is it?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
            {"type": "tool_use", "id": "t2", "name": "look", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "a cat"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": png}}]},
            {"type": "tool_result", "tool_use_id": "t2", "content": "nothing",
             "is_error": True},
            {"type": "text", "text": "and now?"}]},
    ]})
    msgs = chat["messages"]
    assert msgs[0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        {"type": "text", "text": "what is it?"}]
    assert msgs[1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "look", "arguments": '{"q":1}'}},
        {"id": "t2", "type": "function", "function": {"name": "look", "arguments": "{}"}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": "a cat"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "t2", "content": "nothing"}
    assert msgs[4]["role"] == "user"
    assert msgs[4]["content"][0]["type"] == "image_url"
    assert msgs[4]["content"][1] == {"type": "text", "text": "and now?"}
    assert len(msgs) == 5


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "any"}, ("required", None)),
    ({"type": "tool", "name": "f"}, ({"type": "function", "function": {"name": "f"}}, None)),
    ({"type": "none"}, ("none", None)),
])
def test_tool_choice(choice: dict[str, Any], expected: tuple[Any, Any]) -> None:
    chat = chat_body({"model": "m", "max_tokens": 5, "tool_choice": choice,
                      "messages": [{"role": "user", "content": "hi"}],
                      "tools": [{"name": "f", "input_schema": {"type": "object"}}]})
    assert (chat["tool_choice"], chat.get("parallel_tool_calls")) == expected


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"model": "", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "max_tokens": 5, "messages": "hi"}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
     "messages[0]"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "search_result", "source": "x"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "max_tokens": 5, "temperature": "hot",
      "messages": [{"role": "user", "content": "x"}]}, "temperature"),
])
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_body(body)
    assert info.value.param == param


def test_documents_text_passes_and_a_pdf_leaves_a_note() -> None:
    chat = chat_body({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "the notes"}},
        {"type": "document", "title": "spec.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
        {"type": "text", "text": "summarise"}]}]})
    text = chat["messages"][0]["content"]
    assert text.startswith("the notes\n\n[lai: the document 'spec.pdf' was left out")
    assert text.endswith("summarise") and "JVBER" not in text


# ------------------------------------------------------------------ non-streamed answers


def test_completion_with_reasoning_text_and_tool_calls_becomes_a_message() -> None:
    doc = {"id": "chatcmpl-1", "object": "chat.completion", "model": "/models/q.gguf",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
               "role": "assistant", "reasoning_content": "think", "content": "Sure.",
               "tool_calls": [
                   {"id": "c1", "type": "function",
                    "function": {"name": "a", "arguments": '{"x": 1}'}},
                   {"id": "c2", "type": "function",
                    "function": {"name": "b", "arguments": "not json"}}]}}],
           "usage": {"prompt_tokens": 100, "completion_tokens": 7,
                     "prompt_tokens_details": {"cached_tokens": 60}}}
    msg = message(doc, model="claude-x", message_id="msg_1")
    assert msg["model"] == "claude-x" and msg["id"] == "msg_1"
    assert msg["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "c1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "c2", "name": "b", "input": {}}]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {"input_tokens": 40, "output_tokens": 7,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60}


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"),
                                              ("content_filter", "refusal"), (None, "end_turn")])
def test_stop_reasons(finish: str | None, stop: str) -> None:
    doc = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert message(doc, model="m", message_id="msg_1")["stop_reason"] == stop


def test_a_completion_without_choices_is_refused() -> None:
    with pytest.raises(ValueError):
        message({"choices": []}, model="m", message_id="msg_1")


# ------------------------------------------------------------------ streams


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, int] | None = None) -> bytes:
    doc: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": []}
    if delta is not None or finish is not None:
        doc["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        doc["usage"] = usage
    return orjson.dumps(doc)


def run(payloads: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """Feed the payloads; parse the SSE that comes out into (event name, data)."""
    t = StreamTranslator(model="claude-sonnet-4", message_id="msg_x", input_tokens=12)
    raw = t.start() + b"".join(t.feed(None, p) for p in payloads) + t.finish()
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def call(index: int, *, id_: str | None = None, name: str | None = None,
         args: str = "") -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": args}
    if name is not None:
        fn["name"] = name
    out: dict[str, Any] = {"index": index, "function": fn}
    if id_ is not None:
        out["id"] = id_
    return {"tool_calls": [out]}


def test_interleaved_text_and_two_parallel_tool_calls() -> None:
    events = run([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}), chunk({"content": "look."}),
        chunk(call(0, id_="c1", name="read")), chunk(call(0, args='{"pa')),
        chunk(call(0, args='th": "a"}')),
        chunk(call(1, id_="c2", name="grep")), chunk(call(1, args='{"q": "b"}')),
        chunk(finish="tool_calls"),
        chunk(usage={"prompt_tokens": 30, "completion_tokens": 9}),
        b"[DONE]",
    ])
    names = [n for n, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["model"] == "claude-sonnet-4" and start["usage"]["input_tokens"] == 12
    assert events[2][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "read",
                                             "input": {}}
    assert events[10][1]["index"] == 2
    assert events[10][1]["content_block"]["id"] == "c2"
    args = "".join(d["delta"]["partial_json"] for n, d in events
                   if n == "content_block_delta" and d["index"] == 1)
    assert orjson.loads(args) == {"path": "a"}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"]["input_tokens"] == 30
    assert events[-2][1]["usage"]["output_tokens"] == 9


def test_reasoning_becomes_a_thinking_block_before_the_text() -> None:
    events = run([chunk({"reasoning_content": "Hmm, "}), chunk({"reasoning_content": "ok."}),
                  chunk({"content": "Answer."}), chunk(finish="stop"), b"[DONE]"])
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas[0] == {"type": "thinking_delta", "thinking": "Hmm, "}
    assert deltas[2] == {"type": "text_delta", "text": "Answer."}
    # No usage from the upstream: lai counts what it streamed.
    assert events[-2][1]["usage"]["output_tokens"] == 3
    assert events[-1][0] == "message_stop"


def test_a_tool_name_that_comes_after_the_id_opens_the_block_late() -> None:
    events = run([chunk(call(0, id_="c1", args="")), chunk(call(0, name="ls", args='{"a"')),
                  chunk(call(0, args=": 1}")), chunk(finish="tool_calls"), b"[DONE]"])
    [start] = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["name"] == "ls" and start["content_block"]["id"] == "c1"
    args = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert args == '{"a": 1}'


def test_a_stream_without_a_finish_reason_ends_with_an_error_event() -> None:
    events = run([chunk({"content": "half an ans"}), b"[DONE]"])
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]


def test_a_stream_that_just_stops_ends_with_an_error_event() -> None:
    events = run([chunk({"content": "half"})])
    assert [n for n, _ in events][-1] == "error"


@pytest.mark.parametrize(("err", "kind"), [
    ({"message": "slow", "type": "api_error", "code": "upstream_timeout"}, "timeout_error"),
    ({"message": "boom", "type": "api_error", "code": "upstream_error"}, "api_error"),
    ({"message": "Overloaded", "type": "overloaded_error", "code": None}, "overloaded_error"),
])
def test_an_error_chunk_becomes_an_anthropic_error_event(err: dict[str, Any], kind: str) -> None:
    events = run([chunk({"content": "hi"}), orjson.dumps({"error": err}), b"[DONE]"])
    assert events[-1] == ("error", {"type": "error", "error": {"type": kind,
                                                               "message": err["message"]}})
    assert [n for n, _ in events].count("error") == 1
