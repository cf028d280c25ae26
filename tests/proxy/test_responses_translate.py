"""Translation between the Responses API and chat completions, without IO: requests one
way, recorded chat event sequences the other."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lai.errors import InvalidRequest
from lai.proxy.responses_output import assistant_message, response_from_completion
from lai.proxy.responses_request import to_chat
from lai.proxy.responses_stream import ResponseStream


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
           usage: dict[str, int] | None = None) -> bytes:
    doc: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "provider": "box",
                           "choices": [] if delta is None and finish is None else [
                               {"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        doc["usage"] = usage
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def _call(index: int, *, id: str | None = None, name: str | None = None,
          arguments: str = "") -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        fn["name"] = name
    call: dict[str, Any] = {"index": index, "function": fn}
    if id is not None:
        call.update(id=id, type="function")
    return {"tool_calls": [call]}


def _run(chunks: list[bytes], body: dict[str, Any] | None = None,
         split: bool = False) -> tuple[list[dict[str, Any]], ResponseStream]:
    req = to_chat(body or {"model": "m", "input": "x", "stream": True})
    rs = ResponseStream(req, "resp_1", 1700000000)
    raw = rs.start()
    data = b"".join(chunks)
    # Fed byte by byte too: an upstream read may end anywhere inside an event.
    pieces = [data[i:i + 1] for i in range(len(data))] if split else [data]
    for piece in pieces:
        raw += rs.feed(piece)
    raw += rs.finish()
    events = []
    for block in raw.split(b"\n\n"):
        if block:
            name, data_line = block.split(b"\n")
            event = json.loads(data_line[6:])
            assert name == b"event: " + event["type"].encode()
            events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, rs


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.mark.parametrize("split", [False, True])
def test_interleaved_text_and_tool_calls_become_items_in_order(split: bool) -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Let me "}), _chunk({"content": "check."}),
        _chunk(_call(0, id="call_1", name="lookup")),
        _chunk(_call(0, arguments='{"q": ')), _chunk(_call(0, arguments='"x"}')),
        _chunk({"content": "Meanwhile..."}),
        _chunk(finish="tool_calls"), _chunk(usage=USAGE), b"data: [DONE]\n\n",
    ]
    events, rs = _run(chunks, split=split)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call", "message"]
    assert final["output"][0]["content"][0]["text"] == "Let me check."
    assert final["output"][1]["arguments"] == '{"q": "x"}'
    assert final["output"][1]["call_id"] == "call_1"
    assert final["output"][2]["content"][0]["text"] == "Meanwhile..."
    assert final["usage"]["input_tokens"] == 11 and final["usage"]["output_tokens"] == 7
    assert final["usage"]["total_tokens"] == 18
    # Each added item is done under the same output index and id.
    added = {e["output_index"]: e["item"]["id"] for e in events
             if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"]["id"] for e in events
            if e["type"] == "response.output_item.done"}
    assert added == done
    assert rs.response == final
    assert assistant_message(final["output"]) == {
        "role": "assistant", "content": "Let me check.Meanwhile...",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]}


def test_two_parallel_tool_calls_keep_their_own_arguments() -> None:
    chunks = [
        _chunk(_call(0, id="call_a", name="read")),
        _chunk(_call(1, id="call_b", name="write")),
        _chunk(_call(0, arguments='{"path":')), _chunk(_call(1, arguments='{"path":')),
        _chunk(_call(1, arguments='"b"}')), _chunk(_call(0, arguments='"a"}')),
        _chunk(finish="tool_calls"), b"data: [DONE]\n\n",
    ]
    events, _ = _run(chunks)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [(o["name"], o["call_id"], o["arguments"]) for o in final["output"]] == [
        ("read", "call_a", '{"path":"a"}'), ("write", "call_b", '{"path":"b"}')]
    by_index = {}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            by_index.setdefault(e["output_index"], []).append(e["delta"])
    assert by_index == {0: ['{"path":', '"a"}'], 1: ['{"path":', '"b"}']}
    dones = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [d["arguments"] for d in dones] == ['{"path":"a"}', '{"path":"b"}']


def test_a_stream_without_a_finish_reason_fails_and_never_completes() -> None:
    events, rs = _run([_chunk({"content": "half an ans"})])
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "upstream_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "half an ans"
    assert not rs.succeeded
    assert rs.finish() == b""  # finishing twice adds nothing


def test_an_error_event_from_the_engine_fails_the_response_with_its_code() -> None:
    error = {"error": {"message": "box: stream broke", "type": "api_error",
                       "code": "upstream_error", "param": None}}
    events, _ = _run([_chunk({"content": "a"}), b"data: " + orjson.dumps(error) + b"\n\n",
                      b"data: [DONE]\n\n"])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "upstream_error",
                                               "message": "box: stream broke"}


def test_length_finish_is_an_incomplete_response() -> None:
    events, _ = _run([_chunk({"content": "a b"}), _chunk(finish="length"), b"data: [DONE]\n\n"])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_tool_call_announced_only_once_its_name_arrives() -> None:
    chunks = [_chunk({"tool_calls": [{"index": 0, "id": "call_z",
                                      "function": {"arguments": "{"}}]}),
              _chunk(_call(0, name="late")), _chunk(_call(0, arguments="}")),
              _chunk(finish="tool_calls")]
    events, _ = _run(chunks)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert added[0]["item"]["name"] == "late"
    assert events[-1]["response"]["output"][0]["arguments"] == "{}"


def test_a_completion_with_text_and_calls_becomes_a_response_object() -> None:
    req = to_chat({"model": "alias", "input": "x", "tools": [
        {"type": "custom", "name": "patch"}, {"type": "function", "name": "f"}]})
    completion = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Sure.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function",
             "function": {"name": "patch", "arguments": '{"input": "diff"}'}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    resp = response_from_completion(req, completion, "resp_x", 5)
    assert resp["model"] == "alias" and resp["status"] == "completed"
    assert [o["type"] for o in resp["output"]] == ["message", "function_call",
                                                    "custom_tool_call"]
    assert resp["output"][2]["input"] == "diff"
    assert resp["usage"]["total_tokens"] == 7
    sent_back = assistant_message(resp["output"])["tool_calls"][1]["function"]["arguments"]
    assert json.loads(sent_back) == {"input": "diff"}


def test_request_items_become_chat_messages() -> None:
    req = to_chat({
        "model": "m", "instructions": "sys",
        "input": [
            {"role": "developer", "content": "dev"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "r1"},
            {"type": "custom_tool_call_output", "call_id": "c2",
             "output": [{"type": "input_text", "text": "r2"}]},
            {"type": "reasoning", "id": "rs", "summary": []},
        ],
        "max_output_tokens": 50, "temperature": 0.2,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"},
                            "strict": True}},
        "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}],
        "tool_choice": {"type": "function", "name": "g"},
        "parallel_tool_calls": True,
    })
    chat = req.chat
    assert chat["messages"] == [
        {"role": "system", "content": "sys\n\ndev"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"},
    ]
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.2
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}, "strict": True}}
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "g"}}
    assert chat["parallel_tool_calls"] is True
    assert "stream" not in chat
    # Instructions are not part of what a stored response keeps.
    assert req.input_messages[0] == {"role": "system", "content": "dev"}


def test_a_continuation_puts_the_history_after_the_new_instructions() -> None:
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    req = to_chat({"model": "m", "instructions": "new", "input": "c",
                   "previous_response_id": "resp_1"}, history)
    assert req.chat["messages"] == [{"role": "system", "content": "new"}, *history,
                                    {"role": "user", "content": "c"}]
    assert req.input_messages == [{"role": "user", "content": "c"}]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
     "input[0].content[0]"),
    ({"model": "m", "input": "x", "tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"model": "m", "input": "x", "tools": [{"type": "web_search"}],
      "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": [{"type": ["message"]}]}, "input[0].type"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": 1, "name": "f"}]},
     "input[0].call_id"),
    ({"model": "m", "input": "x", "tools": [{"type": {"a": 1}}]}, "tools[0].type"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}],
      "tool_choice": ["auto"]}, "tool_choice"),
])
def test_what_cannot_be_translated_is_a_400_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        to_chat(body)
    assert err.value.param == param


def test_hosted_tools_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    req = to_chat({"model": "m", "input": "x", "tools": [
        {"type": "web_search"}, {"type": "function", "name": "f"}]})
    assert [t["function"]["name"] for t in req.chat["tools"]] == ["f"]
    assert "web_search" in caplog.text
    only_hosted = to_chat({"model": "m", "input": "x", "tools": [{"type": "file_search"}],
                           "parallel_tool_calls": True})
    assert "tools" not in only_hosted.chat and "parallel_tool_calls" not in only_hosted.chat


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "role", "content", "text", "name", "call_id", "arguments",
                         "output", "input", "image_url", "format", "tools", "x"]),
        inner, max_size=5),
    max_leaves=12,
)
_ITEM_TYPES = st.sampled_from(["message", "function_call", "function_call_output",
                               "custom_tool_call", "reasoning", "item_reference", "zzz"])


@settings(derandomize=True, max_examples=100, deadline=None)
@given(input_=st.lists(st.fixed_dictionaries({"type": _ITEM_TYPES}, optional={
           "role": st.sampled_from(["user", "assistant", "developer", "tool", 3]),
           "content": _JSON, "call_id": _JSON, "output": _JSON}), max_size=3) | _JSON,
       field=st.sampled_from(["tools", "tool_choice", "text", "max_output_tokens",
                              "instructions", "temperature"]),
       value=_JSON)
def test_any_request_translates_or_is_a_400(input_: Any, field: str, value: Any) -> None:
    body = {"model": "m", "input": input_, field: value}
    try:
        req = to_chat(body)
    except InvalidRequest:
        return
    orjson.dumps(req.chat)  # what the engine sends must encode


@settings(derandomize=True, max_examples=100, deadline=None)
@given(events=st.lists(_JSON, max_size=6), cut=st.integers(min_value=1, max_value=40))
def test_any_chat_event_sequence_ends_in_exactly_one_final_event(
    events: list[Any], cut: int
) -> None:
    req = to_chat({"model": "m", "input": "x", "stream": True})
    rs = ResponseStream(req, "resp_f", 0)
    raw = b"".join(b"data: " + orjson.dumps({"choices": [{"delta": e}]}) + b"\n\n"
                   for e in events)
    out = rs.start()
    for i in range(0, len(raw), cut):
        out += rs.feed(raw[i:i + cut])
    out += rs.finish()
    finals = [b for b in out.split(b"\n\n") if b.startswith(
        (b"event: response.completed", b"event: response.failed",
         b"event: response.incomplete"))]
    assert len(finals) == 1


def test_upstream_reasoning_becomes_a_reasoning_item_before_the_text() -> None:
    events, rs = _run([_chunk({"reasoning_content": "Think "}),
                       _chunk({"reasoning_content": "hard."}),
                       _chunk({"content": "Answer."}), _chunk(finish="stop")])
    kinds = [e["type"] for e in events]
    assert kinds[2:6] == ["response.output_item.added", "response.reasoning_text.delta",
                          "response.reasoning_text.delta", "response.reasoning_text.done"]
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["reasoning", "message"]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "Think hard."}]
    # What a continuation sends upstream carries the answer, not the reasoning.
    assert assistant_message(output) == {"role": "assistant", "content": "Answer."}
    req = to_chat({"model": "m", "input": "x"})
    resp = response_from_completion(req, {"choices": [{"finish_reason": "stop", "message": {
        "role": "assistant", "content": "A.", "reasoning_content": "Because."}}]}, "r", 0)
    assert [o["type"] for o in resp["output"]] == ["reasoning", "message"]
