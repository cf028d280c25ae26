"""Checking a chat request before anything goes upstream, and estimating its size.

Some servers answer a malformed request with 500 (llama.cpp), which would look like a
provider failure and set off retries and failover; a client's mistake must be a 400 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lai.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class ChatShape:
    """What routing needs to know about a valid chat body."""

    model: str
    stream: bool
    prompt_tokens: int
    max_tokens: int
    has_images: bool
    wants_usage: bool


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _check_int(body: dict[str, Any], key: str, low: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(f"'{key}' must be an integer >= {low}.", key)
    return value


def _part_is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image")


def estimate_text_tokens(text: str) -> int:
    """A cheap token estimate: about four characters a token."""
    return (len(text) + 3) // 4


def inspect_chat(body: Any) -> ChatShape:
    """Validate an OpenAI chat body and measure it. Raises InvalidRequest (400)."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' is required and must be a non-empty string "
                   "(\"auto\", a model id, a provider id or provider/model).", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array of message objects.", "messages")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    max_tokens = _check_int(body, "max_completion_tokens", 1) or _check_int(body, "max_tokens", 1)
    _check_int(body, "n", 1)
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _bad(f"'{key}' must be a number.", key)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")

    chars = 0
    has_images = False
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with 'role' and 'content'.", where)
        role = msg.get("role")
        if role not in ROLES:
            raise _bad(f"{where}.role must be one of {', '.join(sorted(ROLES))}.", where)
        content = msg.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(f"{where}.content[{j}] must be an object with a 'type'.", where)
                if _part_is_image(part):
                    has_images = True
                    chars += 4 * 765  # what a high-detail image tile costs, roughly
                elif isinstance(part.get("text"), str):
                    chars += len(part["text"])
        elif content is None:
            if role not in ("assistant", "function", "tool") and not msg.get("image_refs"):
                raise _bad(f"{where}.content must be a string or an array of parts.", where)
        else:
            raise _bad(f"{where}.content must be a string or an array of parts.", where)
        refs = msg.get("image_refs")
        if refs:
            if not isinstance(refs, list):
                raise _bad(f"{where}.image_refs must be an array.", where)
            has_images = True
            chars += 4 * 765 * len(refs)
        if msg.get("tool_calls"):
            chars += len(str(msg["tool_calls"]))
        chars += 16  # role and framing
    if tools:
        chars += len(str(tools))
    wants_usage = bool(stream_options and stream_options.get("include_usage"))
    return ChatShape(
        model=model.strip(),
        stream=bool(stream),
        prompt_tokens=(chars + 3) // 4,
        max_tokens=max_tokens or 0,
        has_images=has_images,
        wants_usage=wants_usage,
    )
