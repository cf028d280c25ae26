"""lai.engine.adapters.messages: the client's Messages body for a provider that speaks
Messages, and the relay parser that reads the upstream's events without changing them."""

from __future__ import annotations

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters.messages import (
    MessagesPassthrough,
    MessagesStreamParser,
    messages_url,
    upstream_body,
)

MODEL = ModelConfig(id="m", provider_id="p", upstream_id="claude-x", max_tokens=4096)


def test_body_is_renamed_and_kept_within_the_models_limits() -> None:
    body = {"model": "claude-sonnet-4", "max_tokens": 32000, "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 10000}, "top_k": 3}
    assert upstream_body(body, MODEL, stream=False) == {
        "model": "claude-x", "max_tokens": 4096, "top_k": 3,
        "thinking": {"type": "enabled", "budget_tokens": 4095}}
    small = ModelConfig(id="m", provider_id="p", max_tokens=1000)
    assert "thinking" not in upstream_body(body, small, stream=True)
    assert upstream_body({**body, "max_tokens": 100}, MODEL, stream=True)["max_tokens"] == 100


def test_urls_and_headers_per_provider_type() -> None:
    claude = ProviderConfig(id="c", type="anthropic", endpoint="https://api.x.test/v1",
                            auth_secret="sk-1")
    llama = ProviderConfig(id="l", endpoint="http://127.0.0.1:8080/v1", messages_api=True,
                           auth_type="bearer", auth_secret="tok")
    assert messages_url(claude) == "https://api.x.test/v1/messages"
    assert messages_url(llama) == "http://127.0.0.1:8080/v1/messages"
    adapter = MessagesPassthrough({"model": "a", "max_tokens": 5, "messages": []})
    req = adapter.chat_request(claude, MODEL, {"ignored": True}, stream=True)
    assert req.headers["x-api-key"] == "sk-1" and req.headers["accept"] == "text/event-stream"
    assert orjson.loads(req.content)["model"] == "claude-x"
    req = adapter.chat_request(llama, MODEL, {}, stream=False)
    assert req.headers["authorization"] == "Bearer tok"
    assert req.headers["anthropic-version"] == "2023-06-01"


def ev(kind: str, **payload: object) -> tuple[bytes, bytes]:
    return kind.encode(), orjson.dumps({"type": kind, **payload})


def test_events_are_held_until_content_then_relayed_unchanged() -> None:
    parser = MessagesStreamParser("p")
    start = ev("message_start", message={"id": "msg_1", "model": "x",
                                         "usage": {"input_tokens": 7, "output_tokens": 1}})
    assert parser.feed(*start) is None
    assert parser.feed(*ev("ping")) is None
    assert parser.feed(*ev("content_block_start", index=0,
                           content_block={"type": "text", "text": ""})) is None
    out = parser.feed(*ev("content_block_delta", index=0,
                          delta={"type": "text_delta", "text": "Hi"}))
    assert out is not None and out.startswith(b"event: message_start\ndata: " + start[1])
    assert out.count(b"event: ") == 4
    stop = parser.feed(*ev("content_block_stop", index=0))
    assert stop == b"event: content_block_stop\ndata: " + ev("content_block_stop", index=0)[1] \
        + b"\n\n"
    parser.feed(*ev("message_delta", delta={"stop_reason": "end_turn"},
                    usage={"output_tokens": 2}))
    parser.feed(*ev("message_stop"))
    state = parser.state
    assert state.done and state.finish_reason == "stop" and state.content == ["Hi"]
    assert (state.usage.prompt_tokens, state.usage.completion_tokens) == (7, 2)  # type: ignore[union-attr]


def test_an_error_before_content_is_released_for_the_engine_to_fail_over() -> None:
    parser = MessagesStreamParser("p")
    parser.feed(*ev("message_start", message={"id": "m", "model": "x"}))
    out = parser.feed(*ev("error", error={"type": "overloaded_error", "message": "Overloaded"}))
    assert out is not None and b"event: error" in out
    assert parser.state.error == "Overloaded" and parser.state.content_events == 0


def test_an_event_without_a_name_gets_one_from_its_type() -> None:
    parser = MessagesStreamParser("p")
    parser.feed(None, orjson.dumps({"type": "message_start", "message": {}}))
    out = parser.feed(None, orjson.dumps({"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": "a"}}))
    assert out is not None
    assert out.startswith(b"event: message_start\n")
    assert b"event: content_block_delta\n" in out
