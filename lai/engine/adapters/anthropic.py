"""Anthropic Messages API upstreams (``type = "anthropic"``).

lai speaks OpenAI to its clients, so this adapter translates both ways: an OpenAI chat
body becomes a ``POST {endpoint}/v1/messages`` request, and the answer comes back as a
``chat.completion`` body or, streamed, as ``chat.completion.chunk`` SSE events built
from Anthropic's named events (message_start, content_block_start / _delta / _stop,
message_delta, message_stop, ping, error). Every answer carries ``"provider"``.

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
from lai.engine.adapters.base import ParsedCompletion, StreamState, UpstreamRequest
from lai.engine.sse import DONE, encode_event
from lai.engine.types import Usage
from lai.errors import InvalidRequest

ANTHROPIC_VERSION = "2023-06-01"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` -> OpenAI ``finish_reason``."""

_EMPTY_SCHEMA = {"type": "object", "properties": {}}


# ----------------------------------------------------------------- request: OpenAI -> Anthropic


def api_root(provider: ProviderConfig) -> str:
    """The endpoint without a trailing slash or ``/v1`` (people paste either form)."""
    url = provider.endpoint.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def anthropic_headers(provider: ProviderConfig) -> dict[str, str]:
    """``x-api-key`` whatever ``auth_type`` says: Anthropic accepts no other scheme."""
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if provider.auth_secret:
        headers["x-api-key"] = provider.auth_secret
    return headers


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{message} (provider type anthropic)", param=param)


def _image_block(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}.image_url.url must be a non-empty string.", where)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, *params = header.split(";")
        if not sep or "base64" not in params or not media_type:
            raise _bad(f"{where}: an image data URL must be data:<type>;base64,<data>.", where)
        return {"type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}: an image URL must be https:// or a base64 data: URL.", where)


def _part_block(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    """One OpenAI content part as an Anthropic block (None for an empty text part)."""
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise _bad(f"{where}.{kind} must be a string.", where)
        if not text:
            return None  # Anthropic refuses empty text blocks
        block: dict[str, Any] = {"type": "text", "text": text}
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]  # prompt caching hints pass on
        return block
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _image_block(url, where)
    raise _bad(f"{where}: content parts of type {kind!r} are not supported.", where)


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's ``content`` (string, parts or null) as Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        blocks = []
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise _bad(f"{where}.content[{j}] must be an object.", where)
            block = _part_block(part, f"{where}.content[{j}]")
            if block is not None:
                blocks.append(block)
        return blocks
    raise _bad(f"{where}.content must be a string or an array of parts.", where)


def _plain_text(content: Any, where: str) -> str:
    """System and developer content: text only."""
    texts = []
    for block in _content_blocks(content, where):
        if block["type"] != "text":
            raise _bad(f"{where}: system messages may only hold text.", where)
        texts.append(block["text"])
    return "".join(texts)


def _tool_use_block(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _bad(f"{where} must be an object with a 'function'.", where)
    fn = call["function"]
    name, call_id = fn.get("name"), call.get("id")
    if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where} needs an 'id' and a 'function.name'.", where)
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        # Anthropic wants the input as an object; guessing at broken JSON would replay a
        # different call than the one the model made.
        raise _bad(f"{where}.function.arguments must be a JSON object.", where)
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


def _tool_result_block(msg: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_call_id is required on tool messages.", where)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = _content_blocks(content, where)
        if blocks:
            block["content"] = blocks
    return block


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages -> (system text, Anthropic messages)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        # Anthropic wants tool results of one turn in one user message, and user and
        # assistant turns alternating; merging neighbours gives both.
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _plain_text(msg.get("content"), where)
            if text:
                system.append(text)
        elif role == "user":
            push("user", _content_blocks(msg.get("content"), where))
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"), where)
            for j, call in enumerate(msg.get("tool_calls") or ()):
                blocks.append(_tool_use_block(call, f"{where}.tool_calls[{j}]"))
            push("assistant", blocks)
        elif role == "tool":
            push("user", [_tool_result_block(msg, where)])
        else:
            raise _bad(f"{where}: role {role!r} is not supported; use tool messages.", where)
    for msg in out:
        if msg["role"] == "user":
            # tool_result blocks must open the user turn that answers a tool_use.
            msg["content"].sort(key=lambda b: b["type"] != "tool_result")
    if not out:
        raise _bad("The request needs at least one user or assistant message.", "messages")
    return "\n\n".join(system), out


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _bad(f"{where}: only function tools are supported.", where)
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"{where}.function.name is required.", where)
        entry: dict[str, Any] = {"name": fn["name"],
                                 "input_schema": fn.get("parameters") or _EMPTY_SCHEMA}
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
            and isinstance(choice["function"].get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad("tool_choice must be auto, required, none or a named function.",
                   "tool_choice")
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def messages_body(model: ModelConfig, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """The Anthropic Messages request for an OpenAI chat body.

    Raises InvalidRequest for what cannot be said to Anthropic (see the module docstring).
    """
    if (body.get("n") or 1) > 1:
        raise _bad("n > 1 is not supported.", "n")
    system, messages = _messages(body["messages"])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or model.max_tokens
    out: dict[str, Any] = {"model": model.upstream_name, "max_tokens": max_tokens,
                           "messages": messages}
    if system:
        out["system"] = system
    if body.get("temperature") is not None:
        # OpenAI allows 0..2, Anthropic 0..1 and answers 400 above it.
        out["temperature"] = min(max(float(body["temperature"]), 0.0), 1.0)
    # Claude models since Opus 4.1 refuse temperature and top_p together (400); clients
    # often send top_p=1 as a default beside a real temperature, so temperature wins.
    if body.get("top_p") is not None and "temperature" not in out:
        out["top_p"] = body["top_p"]
    if body.get("top_k") is not None:
        out["top_k"] = body["top_k"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if stream:
        out["stream"] = True
    return out


# ----------------------------------------------------------------- answers: Anthropic -> OpenAI


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
