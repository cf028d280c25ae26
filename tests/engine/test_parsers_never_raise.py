"""The adapters' parsers never raise, whatever the upstream sends: a seeded fuzz over
chunk, event and body shapes (derandomized, so a failure is reproducible)."""

from __future__ import annotations

import random
from typing import Any

import orjson

from lai.engine.adapters.anthropic import AnthropicAdapter
from lai.engine.adapters.openai import OpenAIAdapter
from lai.engine.redact import Redactor

ODD: list[Any] = [None, True, 0, -1, 2**40, 1.5, "", "x", "stop", "Bearer sk-abcdef123456",
                  [], [1], ["x"], {}, {"a": 1}, {"type": "text"}, [{}], [None]]


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one member somewhere replaced by an odd value (or left alone)."""
    if isinstance(value, dict) and value and depth < 6 and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: mutate(rng, value[key], depth + 1)}
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return [*value[:i], mutate(rng, value[i], depth + 1), *value[i + 1:]]
    return rng.choice(ODD)


OPENAI_CHUNKS = [
    {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
    {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "f", "arguments": "{\"a\""}}]}, "finish_reason": None}]},
    {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    {"error": {"message": "boom", "type": "server_error", "code": 500}},
]
ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {
        "input_tokens": 3, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "t", "name": "f", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "{\"a\":"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {
        "output_tokens": 5}},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
]


def assert_client_bytes(out: bytes | None) -> None:
    """SSE events of one data line each, JSON objects; error events without the secret
    (answers pass through as they came: content is the model's, not lai's to edit)."""
    if out is None:
        return
    for event in out.split(b"\n\n"):
        if event:
            assert event.startswith(b"data: ") and b"\n" not in event, out
            data = event[len(b"data: "):]
            doc = orjson.loads(data)
            assert isinstance(doc, dict), out
            if "error" in doc:
                assert b"sk-abcdef123456" not in data, out


def test_stream_parsers_never_raise() -> None:
    rng = random.Random(11)
    redact = Redactor(["sk-abcdef123456"])
    cases = [(OpenAIAdapter(), OPENAI_CHUNKS), (AnthropicAdapter(), ANTHROPIC_EVENTS)]
    for adapter, good in cases:
        for _ in range(1500):
            parser = adapter.stream_parser("p", rng.random() < 0.5, model="small",
                                           redact=redact)
            for _ in range(rng.randrange(1, 6)):
                doc = rng.choice(good)
                roll = rng.random()
                if roll < 0.7:
                    data = orjson.dumps(mutate(rng, doc))
                elif roll < 0.8:
                    data = orjson.dumps(doc)[: rng.randrange(40)]  # truncated
                else:
                    data = orjson.dumps(rng.choice(ODD))
                out = parser.feed(b"x" if rng.random() < 0.1 else None, data)
                assert_client_bytes(out)
            parser.state.message()
            assert parser.end() == b"data: [DONE]\n\n"


def test_parse_completion_raises_only_value_error() -> None:
    rng = random.Random(12)
    bodies = [
        (OpenAIAdapter(), {"id": "x", "model": "m", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "hi", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        (AnthropicAdapter(), {"id": "m", "type": "message", "model": "c", "content": [
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ]
    answered = refused = 0
    for adapter, body in bodies:
        for _ in range(1500):
            try:
                parsed = adapter.parse_completion(orjson.dumps(mutate(rng, body)), "p",
                                                  model="small")
            except ValueError:
                refused += 1
                continue
            answered += 1
            doc = orjson.loads(parsed.body)
            assert doc["model"] == "small" and doc["provider"] == "p"
            message = parsed.message or {}
            assert message.get("content") is None or isinstance(message["content"], str)
    assert answered > 100 and refused > 100
