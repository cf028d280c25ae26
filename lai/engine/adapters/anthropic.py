"""Anthropic Messages API upstreams (``type = "anthropic"``).

lai speaks OpenAI to its clients, so this adapter translates both ways: an OpenAI chat
body becomes a ``POST {endpoint}/v1/messages`` request, and the answer comes back as a
``chat.completion`` body or, streamed, as ``chat.completion.chunk`` SSE events built
from Anthropic's named events (message_start, content_block_start / _delta / _stop,
message_delta, message_stop, ping, error). Every answer carries ``"provider"``.
The request side is built in ``lai.engine.adapters.anthropic_request``; this module
translates the answers and holds ``AnthropicAdapter``, which joins the two.

Translated: system and developer messages (hoisted to the top-level ``system``), user
and assistant text, image parts (data: URLs as base64 sources, http(s) URLs as url
sources), assistant ``tool_calls`` <-> ``tool_use`` blocks, ``tool`` messages ->
``tool_result`` blocks, ``tools``, ``tool_choice``, ``parallel_tool_calls``,
``max_tokens`` / ``max_completion_tokens`` (default: the model's ``max_tokens``, since
Anthropic requires one), ``temperature`` (clamped to Anthropic's 0..1), ``top_p`` (only
without a temperature: newer Claude models refuse both), ``top_k``, ``stop``, ``user``,
``stream``; stop reasons and usage (cache reads and writes count as prompt tokens).

Not translated, and refused with a 400 naming the field: ``n`` > 1, legacy ``function``
messages, tools other than functions, content parts other than text and images (audio,
files), tool-call arguments that are not a JSON object. Silently not sent, as Anthropic
has no equivalent here: ``response_format``, ``logprobs``, ``seed``, ``presence_penalty``
/ ``frequency_penalty``, ``reasoning_effort``, ``logit_bias``. Thinking, server-tool and
citation blocks in answers are dropped.

Answers are checked as they are translated (``lai.engine.adapters.checks``): a block or
event whose members have the wrong types, or a data line that is not JSON, ends the
client's stream with an ``upstream_error`` event (a body: ValueError, so a 502 after
retry and failover). Every answer's ``model`` is the name the client asked for when the
engine gives one, and error messages relayed from the upstream are redacted.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters.anthropic_request import anthropic_headers, api_root, messages_body
from lai.engine.adapters.base import (
    ParsedCompletion,
    Redact,
    StreamState,
    UpstreamRequest,
    no_redaction,
)
from lai.engine.adapters.checks import Unusable, count, excerpt, expect, kind_of, not_json
from lai.engine.sse import DONE, encode_event, error_event
from lai.engine.types import Usage
from lai.errors import UpstreamError

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` -> OpenAI ``finish_reason``."""


_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _usage(raw: Any) -> Usage | None:
    """Anthropic usage as lai's; cache reads and writes are prompt tokens too (and billed)."""
    if not isinstance(raw, dict):
        return None
    return Usage(sum(count(raw.get(k)) for k in _INPUT_KEYS), count(raw.get("output_tokens")))


def _openai_usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _finish_reason(stop: Any, where: str) -> str:
    expect(stop, str, where, "a string")
    return FINISH_REASONS.get(stop or "", "stop")


def _tool_use(block: dict[str, Any], where: str) -> tuple[str, str]:
    """(id, name) of a ``tool_use`` block, checked. Raises Unusable."""
    for key in ("id", "name"):
        if not isinstance(block.get(key), str) or not block[key]:
            raise Unusable(f"{where}.{key} is {kind_of(block.get(key))}, not a name")
    return block["id"], block["name"]


def chat_completion(
    doc: dict[str, Any], provider_id: str, *, model: str | None = None
) -> dict[str, Any]:
    """An Anthropic ``message`` object as an OpenAI ``chat.completion`` (with provider,
    and ``model`` when given, else the upstream's).

    Raises ValueError (Unusable) when ``doc`` is not a usable message.
    """
    content = doc.get("content")
    if doc.get("type") != "message" or not isinstance(content, list):
        raise Unusable("upstream answered 200 with something that is not a message")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"content[{i}]"
        if not isinstance(block, dict):
            raise Unusable(f"upstream answered 200 with {where} {kind_of(block)}, "
                           f"not a content block")
        if block.get("type") == "text":
            expect(block.get("text"), str, f"{where}.text", "a string")
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            call_id, name = _tool_use(block, where)
            expect(block.get("input"), dict, f"{where}.input", "an object")
            calls.append({"id": call_id, "type": "function", "function": {
                "name": name, "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    expect(doc.get("id"), str, "id", "a string")
    answer: dict[str, Any] = {
        "id": doc.get("id"), "object": "chat.completion", "created": int(time.time()),
        "model": model if model is not None else doc.get("model"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": _finish_reason(doc.get("stop_reason"), "stop_reason")}],
    }
    usage = _usage(doc.get("usage"))
    if usage is not None:
        answer["usage"] = _openai_usage(usage)
    answer["provider"] = provider_id
    return answer


def _error_parts(doc: Any) -> tuple[str, str | None]:
    """(message, type) of an Anthropic error object ``{"type": "error", "error": {...}}``."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err), err.get("type")
    if err:
        return str(err), None
    return str(doc), None


class AnthropicStreamParser:
    """Turns Anthropic stream events into OpenAI chunks and keeps ``state`` current.

    The assistant role chunk is held back until the first content, so an ``error``
    event before any content leaves the client with nothing yet and the engine can
    still fail over. Never raises (``lai.engine.adapters.base``).
    """

    __slots__ = ("state", "_provider", "_wants_usage", "_id", "_model", "_fixed_model",
                 "_created", "_opened", "_tool_index", "_tool_args", "_prompt_tokens",
                 "_output_tokens", "_redact", "_failed")

    def __init__(self, provider_id: str, client_wants_usage: bool, *,
                 model: str | None = None, redact: Redact = no_redaction) -> None:
        self.state = StreamState()
        self._provider = provider_id
        self._wants_usage = client_wants_usage
        self._id = ""
        self._model = model or ""
        self._fixed_model = model is not None
        self._redact = redact
        self._failed = False
        self._created = int(time.time())
        self._opened = False
        self._tool_index: dict[int, int] = {}
        """Anthropic content block index -> OpenAI tool call index."""
        self._tool_args: dict[int, bool] = {}
        """OpenAI tool call index -> whether any argument piece was sent."""
        self._prompt_tokens = 0
        self._output_tokens = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return encode_event(orjson.dumps({
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "provider": self._provider,
        }))

    def _open(self) -> bytes:
        if self._opened:
            return b""
        self._opened = True
        return self._chunk({"role": "assistant", "content": ""})

    def _tool_delta(self, delta: dict[str, Any]) -> bytes:
        self.state.add_tool_call_delta(delta)
        self.state.content_events += 1
        return self._open() + self._chunk({"tool_calls": [delta]})

    def feed(self, event: bytes | None, data: bytes) -> bytes | None:
        if self._failed:
            return None
        try:
            return self._feed(event, data)
        except Unusable as exc:
            return self._fail(f"a malformed stream event ({exc})")
        except Exception as exc:  # a shape no check foresaw must still end the stream cleanly
            return self._fail(f"a stream event lai could not read ({type(exc).__name__})")

    def _fail(self, what: str) -> bytes:
        """End the stream: record why, and give the client an OpenAI error event."""
        self._failed = True
        what = self._redact(what)
        self.state.error = f"sent {what}"
        self.state.done = True
        err = UpstreamError(f"{self._provider} sent {what}; the answer is incomplete.")
        return error_event(orjson.dumps({**err.to_dict(), "provider": self._provider}))

    def _feed(self, event: bytes | None, data: bytes) -> bytes | None:
        stripped = data.strip()
        if not stripped:
            return None
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return self._fail(f"a data line that is not JSON: {excerpt(stripped)}")
        if not isinstance(doc, dict):
            raise Unusable(f"the event is {kind_of(doc)}, not an object")
        kind = doc.get("type") or (event or b"").decode("ascii", "replace")
        expect(kind, str, "type", "a string")
        expect(doc.get("index"), int, "index", "an integer")
        handler = {
            "message_start": self._on_message_start,
            "content_block_start": self._on_content_block_start,
            "content_block_delta": self._on_content_block_delta,
            "content_block_stop": self._on_content_block_stop,
            "message_delta": self._on_message_delta,
            "message_stop": self._on_message_stop,
            "error": self._on_error,
        }.get(kind)
        return handler(doc) if handler is not None else None  # ping, and events added later

    def _on_message_start(self, doc: dict[str, Any]) -> bytes | None:
        msg = doc.get("message") or {}
        expect(msg, dict, "message", "an object")
        expect(msg.get("id"), str, "message.id", "a string")
        self._id = msg.get("id") or ""
        if not self._fixed_model:
            self._model = str(msg.get("model") or "")
        usage = _usage(msg.get("usage"))
        if usage is not None:
            self._prompt_tokens, self._output_tokens = usage.prompt_tokens, usage.completion_tokens
        return None

    def _on_content_block_start(self, doc: dict[str, Any]) -> bytes | None:
        block = doc.get("content_block") or {}
        expect(block, dict, "content_block", "an object")
        if block.get("type") == "text":
            expect(block.get("text"), str, "content_block.text", "a string")
            # Text blocks start empty; thinking and server tools are dropped.
            return self._text(block["text"]) if block.get("text") else None
        if block.get("type") != "tool_use":
            return None
        call_id, name = _tool_use(block, "content_block")
        index = len(self._tool_index)
        self._tool_index[doc.get("index", index)] = index
        self._tool_args[index] = False
        return self._tool_delta({"index": index, "id": call_id, "type": "function",
                                 "function": {"name": name, "arguments": ""}})

    def _text(self, text: str) -> bytes:
        self.state.content.append(text)
        self.state.content_events += 1
        return self._open() + self._chunk({"content": text})

    def _on_content_block_delta(self, doc: dict[str, Any]) -> bytes | None:
        delta = doc.get("delta") or {}
        expect(delta, dict, "delta", "an object")
        expect(delta.get("text"), str, "delta.text", "a string")
        expect(delta.get("partial_json"), str, "delta.partial_json", "a string")
        if delta.get("type") == "text_delta" and delta.get("text"):
            return self._text(delta["text"])
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_index.get(doc.get("index", -1))
            if index is None:
                return None
            self._tool_args[index] = True
            return self._tool_delta({"index": index,
                                     "function": {"arguments": delta["partial_json"]}})
        return None

    def _on_content_block_stop(self, doc: dict[str, Any]) -> bytes | None:
        index = self._tool_index.get(doc.get("index", -1))
        if index is None or self._tool_args[index]:
            return None
        # A call without parameters streams no JSON at all; OpenAI clients json.loads
        # the arguments, and "" would not parse.
        self._tool_args[index] = True
        return self._tool_delta({"index": index, "function": {"arguments": "{}"}})

    def _on_message_delta(self, doc: dict[str, Any]) -> bytes | None:
        raw = doc.get("usage")
        usage = _usage(raw)
        if usage is not None and isinstance(raw, dict):
            # output_tokens is cumulative; newer API versions repeat the input counts here.
            if any(k in raw for k in _INPUT_KEYS):
                self._prompt_tokens = usage.prompt_tokens
            if raw.get("output_tokens") is not None:
                self._output_tokens = usage.completion_tokens
        self.state.usage = Usage(self._prompt_tokens, self._output_tokens)
        delta = doc.get("delta") or {}
        expect(delta, dict, "delta", "an object")
        stop = delta.get("stop_reason")
        if not stop:
            return None
        finish = _finish_reason(stop, "delta.stop_reason")
        self.state.finish_reason = finish
        out = self._open() + self._chunk({}, finish)
        if self._wants_usage:
            out += encode_event(orjson.dumps({
                "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model, "choices": [],
                "usage": _openai_usage(self.state.usage), "provider": self._provider,
            }))
        return out

    def _on_message_stop(self, doc: dict[str, Any]) -> bytes | None:
        self.state.done = True
        return None

    def _on_error(self, doc: dict[str, Any]) -> bytes:
        message, kind = _error_parts(doc)
        message = self._redact(message)
        kind = self._redact(kind) if isinstance(kind, str) else None
        self.state.error = message
        return encode_event(orjson.dumps({
            "error": {"message": message, "type": kind or "api_error", "code": None,
                      "param": None},
            "provider": self._provider,
        }))

    def end(self) -> bytes:
        return DONE


class AnthropicAdapter:
    """For ``type = "anthropic"`` providers: the Messages API at ``{endpoint}/v1/messages``."""

    def probe(self, provider: ProviderConfig) -> tuple[str, dict[str, str]]:
        """``GET /v1/models`` with the key: proves the key and costs no tokens."""
        return api_root(provider) + provider.probe_path, anthropic_headers(provider)

    def chat_request(
        self, provider: ProviderConfig, model: ModelConfig, body: dict[str, Any], stream: bool
    ) -> UpstreamRequest:
        """Raises InvalidRequest for what Anthropic cannot be asked (module docstring)."""
        headers = {"content-type": "application/json", **anthropic_headers(provider)}
        if stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest(api_root(provider) + "/v1/messages", headers,
                               orjson.dumps(messages_body(model, body, stream)))

    def parse_completion(
        self, raw: bytes, provider_id: str, *, model: str | None = None
    ) -> ParsedCompletion:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Unusable(not_json(raw)) from None
        if not isinstance(doc, dict):
            raise Unusable("upstream answered 200 with something that is not a message")
        try:
            answer = chat_completion(doc, provider_id, model=model)
        except Unusable:
            raise
        except Exception as exc:  # a shape no check foresaw is still the upstream's fault
            raise Unusable(f"upstream answered 200 with a message lai could not read "
                           f"({type(exc).__name__})") from None
        choice = answer["choices"][0]
        return ParsedCompletion(
            body=orjson.dumps(answer),
            usage=_usage(doc.get("usage")),
            message=choice["message"],
            finish_reason=choice["finish_reason"],
        )

    def stream_parser(self, provider_id: str, client_wants_usage: bool, *,
                      model: str | None = None,
                      redact: Redact = no_redaction) -> AnthropicStreamParser:
        return AnthropicStreamParser(provider_id, client_wants_usage, model=model,
                                     redact=redact)

    def error_message(self, raw: bytes) -> str:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw[:200].decode("utf-8", "replace").strip() or "(empty body)"
        message, kind = _error_parts(doc)
        return f"{message} ({kind})" if kind else message
