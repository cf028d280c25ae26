"""The engine's OpenAI answers as Anthropic messages and Messages stream events.

Non-streamed: ``message(doc, ...)`` turns a ``chat.completion`` into a ``message``.
Streamed: ``StreamTranslator`` turns ``chat.completion.chunk`` payloads into the event
grammar Anthropic clients parse: ``message_start``, ``ping``, then per content block
``content_block_start`` / ``content_block_delta`` (``text_delta``, ``thinking_delta``
from an upstream's ``reasoning_content``, ``input_json_delta`` for tool arguments) /
``content_block_stop``, then ``message_delta`` (stop reason and usage) and
``message_stop``. A stream that breaks, or ends without a finish reason, ends with an
``error`` event instead, never silently. The ``model`` in every answer is the name the
client asked for.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.proxy.anthropic.errors import error_doc, stream_error_type

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (anything else: end_turn)."""


def stop_reason(finish_reason: Any) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) \
        else "end_turn"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(raw: Any) -> dict[str, int] | None:
    """OpenAI usage as Anthropic's: cached prompt tokens are ``cache_read_input_tokens``
    and not part of ``input_tokens``, as Anthropic counts them. None without usage."""
    if not isinstance(raw, dict):
        return None
    prompt = _int(raw.get("prompt_tokens"))
    details = raw.get("prompt_tokens_details")
    cached = min(_int(details.get("cached_tokens")), prompt) if isinstance(details, dict) else 0
    return {"input_tokens": prompt - cached, "output_tokens": _int(raw.get("completion_tokens")),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's ``arguments`` string as the object Anthropic's ``input`` must be
    (``{}`` when the model wrote something that is not a JSON object)."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _reasoning(holder: dict[str, Any]) -> Any:
    # llama.cpp and vLLM say reasoning_content; some servers (and vLLM's newer builds) reasoning.
    value = holder.get("reasoning_content")
    return value if value is not None else holder.get("reasoning")


def message(doc: Any, *, model: str, message_id: str) -> dict[str, Any]:
    """An Anthropic ``message`` for an OpenAI ``chat.completion`` (what the engine's
    adapters all answer, whatever the upstream). Raises ValueError for a body that is
    not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list) \
            or not doc["choices"] or not isinstance(doc["choices"][0], dict):
        raise ValueError("the upstream's answer has no choices")
    choice = doc["choices"][0]
    msg = _obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(msg)
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if isinstance(msg.get("content"), str) and msg["content"]:
        content.append({"type": "text", "text": msg["content"]})
    calls = msg.get("tool_calls")
    for i, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            continue
        fn = call["function"]
        content.append({"type": "tool_use",
                        "id": call.get("id") if isinstance(call.get("id"), str) and call["id"]
                        else f"toolu_{message_id[4:]}_{i}",
                        "name": fn.get("name") if isinstance(fn.get("name"), str) else "",
                        "input": tool_input(fn.get("arguments"))})
    usage = usage_of(doc.get("usage")) or {"input_tokens": 0, "output_tokens": 0,
                                           "cache_creation_input_tokens": 0,
                                           "cache_read_input_tokens": 0}
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(choice.get("finish_reason")),
            "stop_sequence": None, "usage": usage}


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic writes it: ``event:`` line, ``data:`` line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_event(kind: str, text: str) -> bytes:
    return event("error", error_doc(kind, text))


class StreamTranslator:
    """OpenAI chunk payloads in (the ``data:`` of each event), Anthropic events out.

    ``start()`` first, then ``feed()`` for every payload (``b"[DONE]"`` included);
    ``finish()`` when the engine's stream has ended, which adds an error event if the
    message never completed. Holds no IO; the caller writes the bytes.
    """

    def __init__(self, *, model: str, message_id: str, input_tokens: int) -> None:
        self.model = model
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.ended = False
        """A message_stop or an error event went out: nothing more may follow."""
        self.failed = False
        self._blocks = 0
        self._open: tuple[str, Any] | None = None
        """The open block: ("text" | "thinking", None) or ("tool", openai tool index)."""
        self._tools: dict[int, int] = {}
        """OpenAI tool call index -> Anthropic block index, once its block is open."""
        self._pending: dict[int, dict[str, Any]] = {}
        """Tool calls seen without a name yet: {"id", "args"} until the name arrives."""
        self._pieces = 0

    def start(self) -> bytes:
        return event("message_start", {"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }}) + event("ping", {"type": "ping"})

    # ------------------------------------------------------------------ blocks

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"type": "content_block_stop",
                                            "index": self._blocks - 1})

    def _begin(self, kind: str, key: Any, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = (kind, key)
        self._blocks += 1
        return out + event("content_block_start", {"type": "content_block_start",
                                                   "index": self._blocks - 1,
                                                   "content_block": block})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        self._pieces += 1
        return event("content_block_delta", {"type": "content_block_delta", "index": index,
                                             "delta": delta})

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        if self._open != (kind, None):
            block = {"type": "text", "text": ""} if kind == "text" else \
                {"type": "thinking", "thinking": "", "signature": ""}
            out = self._begin(kind, None, block)
        delta = {"type": "text_delta", "text": text} if kind == "text" else \
            {"type": "thinking_delta", "thinking": text}
        return out + self._delta(self._blocks - 1, delta)

    def _tool(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", 0)
        if not isinstance(index, int):
            index = 0
        fn = _obj(call.get("function"))
        args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        if index not in self._tools:
            pending = self._pending.setdefault(index, {"id": None, "args": ""})
            if isinstance(call.get("id"), str) and call["id"]:
                pending["id"] = call["id"]
            pending["args"] += args
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                return b""  # Anthropic's block opens with the name: wait for it
            del self._pending[index]
            call_id = pending["id"] or f"toolu_{self.message_id[4:]}_{index}"
            out = self._begin("tool", index, {"type": "tool_use", "id": call_id,
                                              "name": name, "input": {}})
            self._tools[index] = self._blocks - 1
            if pending["args"]:
                out += self._delta(self._blocks - 1, {"type": "input_json_delta",
                                                      "partial_json": pending["args"]})
            return out
        if not args:
            return b""
        # A piece for a call whose block is already closed (a server that interleaves
        # parallel calls) still names its block; the SDKs accumulate by index.
        return self._delta(self._tools[index], {"type": "input_json_delta",
                                                "partial_json": args})

    # ------------------------------------------------------------------ feeding

    def feed(self, name: bytes | None, data: bytes) -> bytes:
        """The events for one OpenAI chunk payload (empty when it carries nothing);
        ``name``, the SSE event name, is unused (OpenAI sends none)."""
        if self.ended:
            return b""
        if data == b"[DONE]":
            return self._done()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk:
            err = chunk["error"]
            text = err.get("message") if isinstance(err, dict) else str(err)
            return self.fail(stream_error_type(err), str(text or "The upstream failed."))
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        out = b""
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            return out
        delta = _obj(choice.get("delta"))
        reasoning = _reasoning(delta)
        if isinstance(reasoning, str) and reasoning:
            out += self._text("thinking", reasoning)
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text("text", delta["content"])
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out += self._tool(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish_reason = finish
        return out

    def fail(self, kind: str, text: str) -> bytes:
        """End the stream with an ``error`` event (nothing follows it)."""
        if self.ended:
            return b""
        self.ended = self.failed = True
        return error_event(kind, text)

    def _done(self) -> bytes:
        if self.finish_reason is None:
            return self.fail("api_error", "The upstream ended the stream without finishing "
                                          "the message (no finish reason).")
        out = b""
        for index, pending in list(self._pending.items()):
            # A call that never got a name cannot be a tool_use block; its text is lost
            # to the client either way, so say so instead of inventing a tool.
            del self._pending[index]
            out += self._text("text", f"[lai: dropped a tool call without a name: "
                                      f"{pending['args']}]")
        out += self._close()
        usage = self.usage or {"input_tokens": self.input_tokens, "output_tokens": self._pieces,
                               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        self.ended = True
        return out + event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None},
            "usage": usage,
        }) + event("message_stop", {"type": "message_stop"})

    def finish(self) -> bytes:
        """After the engine's last bytes: an error event unless the message ended."""
        if self.ended:
            return b""
        return self.fail("api_error", "The stream ended before the message was complete.")


class PassthroughRelay:
    """An upstream's own Messages events on their way to the client (a provider that
    speaks Messages, ``lai.engine.adapters.messages``): passed on as they came, but
    ``message_start`` names the model the client asked for, the engine's OpenAI-shaped
    error (a stream that broke after it began) becomes an Anthropic ``error`` event, and
    a stream that stops before ``message_stop`` ends with one too.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.ended = False
        self.failed = False

    def feed(self, name: bytes | None, data: bytes) -> bytes:
        if self.ended:
            return b""
        if not name:
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                return b""
            if isinstance(doc, dict) and "error" in doc:
                err = doc["error"]
                text = err.get("message") if isinstance(err, dict) else str(err)
                return self.fail(stream_error_type(err), str(text or "The upstream failed."))
            return b""
        if name == b"message_start":
            doc = orjson.loads(data)
            if isinstance(doc, dict) and isinstance(doc.get("message"), dict):
                doc["message"]["model"] = self.model
                data = orjson.dumps(doc)
        elif name == b"message_stop":
            self.ended = True
        elif name == b"error":
            self.ended = self.failed = True
        return b"event: " + name + b"\ndata: " + data + b"\n\n"

    def fail(self, kind: str, text: str) -> bytes:
        if self.ended:
            return b""
        self.ended = self.failed = True
        return error_event(kind, text)

    def finish(self) -> bytes:
        if self.ended:
            return b""
        return self.fail("api_error", "The stream ended before the message was complete.")
