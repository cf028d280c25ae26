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
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters.anthropic_request import anthropic_headers, api_root, messages_body
from lai.engine.adapters.base import ParsedCompletion, StreamState, UpstreamRequest
from lai.engine.sse import DONE, encode_event
from lai.engine.types import Usage

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
    try:
        prompt = sum(int(raw.get(k) or 0) for k in _INPUT_KEYS)
        return Usage(prompt, int(raw.get("output_tokens") or 0))
    except (TypeError, ValueError):
        return None


def _openai_usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def chat_completion(doc: dict[str, Any], provider_id: str) -> dict[str, Any]:
    """An Anthropic ``message`` object as an OpenAI ``chat.completion`` (with provider).

    Raises ValueError when ``doc`` is not a message.
    """
    content = doc.get("content")
    if doc.get("type") != "message" or not isinstance(content, list):
        raise ValueError("upstream answered 200 with something that is not a message")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    answer: dict[str, Any] = {
        "id": doc.get("id"), "object": "chat.completion", "created": int(time.time()),
        "model": doc.get("model"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": FINISH_REASONS.get(doc.get("stop_reason") or "", "stop")}],
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
    still fail over.
    """

    __slots__ = ("state", "_provider", "_wants_usage", "_id", "_model", "_created",
                 "_opened", "_tool_index", "_tool_args", "_prompt_tokens", "_output_tokens")

    def __init__(self, provider_id: str, client_wants_usage: bool) -> None:
        self.state = StreamState()
        self._provider = provider_id
        self._wants_usage = client_wants_usage
        self._id = ""
        self._model = ""
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
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # not an Anthropic event; nothing a client could use
        if not isinstance(doc, dict):
            return None
        kind = doc.get("type") or (event or b"").decode("ascii", "replace")
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
        self._id = str(msg.get("id") or "")
        self._model = str(msg.get("model") or "")
        usage = _usage(msg.get("usage"))
        if usage is not None:
            self._prompt_tokens, self._output_tokens = usage.prompt_tokens, usage.completion_tokens
        return None

    def _on_content_block_start(self, doc: dict[str, Any]) -> bytes | None:
        block = doc.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return self._text(block["text"])
        if block.get("type") != "tool_use":
            return None  # text blocks start empty; thinking and server tools are dropped
        index = len(self._tool_index)
        self._tool_index[doc.get("index", index)] = index
        self._tool_args[index] = False
        return self._tool_delta({"index": index, "id": block.get("id"), "type": "function",
                                 "function": {"name": block.get("name") or "",
                                              "arguments": ""}})

    def _text(self, text: str) -> bytes:
        self.state.content.append(text)
        self.state.content_events += 1
        return self._open() + self._chunk({"content": text})

    def _on_content_block_delta(self, doc: dict[str, Any]) -> bytes | None:
        delta = doc.get("delta") or {}
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
        stop = (doc.get("delta") or {}).get("stop_reason")
        if not stop:
            return None
        finish = FINISH_REASONS.get(stop, "stop")
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

    def parse_completion(self, raw: bytes, provider_id: str) -> ParsedCompletion:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError("upstream answered 200 with a body that is not JSON") from exc
        if not isinstance(doc, dict):
            raise ValueError("upstream answered 200 with something that is not a message")
        answer = chat_completion(doc, provider_id)
        choice = answer["choices"][0]
        return ParsedCompletion(
            body=orjson.dumps(answer),
            usage=_usage(doc.get("usage")),
            message=choice["message"],
            finish_reason=choice["finish_reason"],
        )

    def stream_parser(self, provider_id: str, client_wants_usage: bool) -> AnthropicStreamParser:
        return AnthropicStreamParser(provider_id, client_wants_usage)

    def error_message(self, raw: bytes) -> str:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw[:200].decode("utf-8", "replace").strip() or "(empty body)"
        message, kind = _error_parts(doc)
        return f"{message} ({kind})" if kind else message
