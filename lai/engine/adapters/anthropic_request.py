"""OpenAI chat bodies as Anthropic Messages API requests.

The request half of the ``type = "anthropic"`` adapter: the upstream URL and headers,
and ``messages_body``, which turns an OpenAI chat body into the body of a
``POST {endpoint}/v1/messages``. ``lai.engine.adapters.anthropic`` translates the
answers back and lists which fields are translated, dropped or refused.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.errors import InvalidRequest

ANTHROPIC_VERSION = "2023-06-01"

_EMPTY_SCHEMA = {"type": "object", "properties": {}}



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

    Raises InvalidRequest for what cannot be said to Anthropic (see the
    ``lai.engine.adapters.anthropic`` docstring).
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
