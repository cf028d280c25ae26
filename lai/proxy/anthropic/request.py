"""Anthropic Messages requests as OpenAI chat bodies, for the engine to route.

Translated: ``system`` (a string or text blocks) -> one system message; ``system``
messages inside ``messages`` (Claude Code's mid-conversation system messages: a string
or text blocks) -> a system message in the same place (joined with a system message
right before it, since many local chat templates take one system message at a time);
user and assistant ``text``; ``image`` blocks (base64 -> a data: URL, url -> the URL) ->
image_url parts; assistant ``tool_use`` -> ``tool_calls``; ``tool_result`` -> ``tool``
messages (placed first, right after the assistant turn that called, as OpenAI wants;
images in a result follow as a user message); text ``document`` blocks -> text, PDF and
file documents -> a one-line note that they were left out; ``tools`` (custom tools with
``input_schema``) -> function tools; ``tool_choice`` (auto, any, tool, none,
``disable_parallel_tool_use``); ``max_tokens``; ``stop_sequences`` -> ``stop``;
``temperature``, ``top_p``; ``metadata.user_id`` -> ``user``; ``stream``; structured
outputs (``output_config.format``, or the older ``output_format``: a JSON schema) ->
``response_format`` of type ``json_schema``.

Accepted and not sent upstream (an OpenAI-compatible server has no equivalent, or a
strict one such as OpenAI's refuses the field): ``thinking``, ``output_config.effort``,
``context_management``, Claude Code's billing block at the top of ``system``
(``lai.engine.adapters.messages.BILLING_PREFIX``), ``cache_control`` on any block,
``top_k``, ``service_tier``, ``container``, ``mcp_servers``, server tools (web search,
code execution, bash, text editor, computer: a ``tools`` entry with a ``type``),
``thinking`` / ``redacted_thinking`` / server-tool blocks in the history. Refused with a
400 naming the field: a missing or malformed ``model``, ``max_tokens`` or ``messages``,
a role other than user/assistant/system, block types lai does not know, an output
format other than a JSON schema.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.engine.adapters.messages import is_billing_block
from lai.errors import InvalidRequest

_DROPPED_ASSISTANT = frozenset({"thinking", "redacted_thinking", "server_tool_use",
                                "web_search_tool_result", "web_fetch_tool_result",
                                "code_execution_tool_result", "mcp_tool_use",
                                "mcp_tool_result", "container_upload"})
"""History blocks with no OpenAI equivalent; the model's visible answer is unaffected."""


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _text_of(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text must be a string.", where)
    return text


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source must be an object.", where)
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not media or not isinstance(data, str) or not data:
            raise _bad(f"{where}.source needs 'media_type' and 'data' strings.", where)
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        given = source.get("url")
        if not isinstance(given, str) or not given.startswith(("https://", "http://")):
            raise _bad(f"{where}.source.url must be an http(s) URL.", where)
        url = given
    else:
        raise _bad(f"{where}.source.type must be 'base64' or 'url' ({kind!r} is not "
                   f"supported by lai).", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text" \
            and isinstance(source.get("data"), str):
        return source["data"]
    if isinstance(source, dict) and source.get("type") == "content" \
            and isinstance(source.get("content"), list | str):
        parts = _user_parts(source["content"], f"{where}.source.content")
        return "\n\n".join(p["text"] for p in parts if p["type"] == "text")
    # A PDF (or file) the model cannot read: a note in its place keeps a conversation that
    # once held one usable, where a 400 would refuse every later turn of it.
    title = block.get("title")
    named = f" '{title}'" if isinstance(title, str) and title else ""
    return (f"[lai: the document{named} was left out: this model is reached through chat "
            f"completions, which carry no PDF or file documents]")


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Text and image blocks as OpenAI parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or an array of content blocks.", where)
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"{at} must be an object with a 'type'.", at)
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block, at)})
        else:
            raise _bad(f"{at}: content blocks of type {kind!r} are not supported here.", at)
    return parts


def _openai_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # Plain text as a string: the widest-understood form among OpenAI-compatible servers.
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[Any]]:
    """(the ``tool`` message, image parts that must follow in a user message)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id is required.", where)
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    else:
        parts = _user_parts(content, f"{where}.content")
        text = "\n\n".join(p["text"] for p in parts if p["type"] == "text")
        images = [p for p in parts if p["type"] != "text"]
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content blocks.", where)
    tools: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []
    rest: list[Any] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            message, images = _tool_result(block, at)
            tools.append(message)
            later.extend(images)
        else:
            rest.append(block)
    out = list(tools)
    parts = later + (_user_parts(rest, f"{where}.content") if rest else [])
    if parts or not tools:
        out.append({"role": "user", "content": _openai_content(parts)})
    return out


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content blocks.", where)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"{at} must be an object with a 'type'.", at)
        kind = block["type"]
        if kind == "text":
            texts.append(_text_of(block, at))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str) or not name:
                raise _bad(f"{at} needs an 'id' and a 'name'.", at)
            args = block.get("input", {})
            calls.append({"id": call_id, "type": "function", "function": {
                "name": name, "arguments": orjson.dumps(args).decode()}})
        elif kind not in _DROPPED_ASSISTANT:
            raise _bad(f"{at}: content blocks of type {kind!r} are not supported here.", at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(system: Any, where: str = "system") -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise _bad(f"'{where}' must be a string or an array of text blocks.", where)
    texts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"{where}[{j}] must be a text block.", where)
        text = _text_of(block, f"{where}[{j}]")
        if not is_billing_block(block):
            texts.append(text)
    return "\n\n".join(texts)


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The chat ``response_format`` for structured outputs: ``output_config.format`` (or
    the older top-level ``output_format``) ``{"type": "json_schema", "schema": ...}``."""
    config = body.get("output_config")
    where = "output_config.format"
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None and body.get("output_format") is not None:
        fmt, where = body["output_format"], "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" \
            or not isinstance(fmt.get("schema"), dict):
        raise _bad(f"'{where}' must be {{\"type\": \"json_schema\", \"schema\": {{...}}}}.",
                   where)
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def _add_system(chat: list[dict[str, Any]], text: str) -> None:
    # Joined with a system message right before it: many local chat templates refuse two
    # system messages in a row (Claude Code puts one right after its system prompt).
    if not text:
        return
    if chat and chat[-1]["role"] == "system":
        chat[-1] = {"role": "system", "content": f"{chat[-1]['content']}\n\n{text}"}
    else:
        chat.append({"role": "system", "content": text})


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")
    out = []
    for j, tool in enumerate(tools):
        at = f"tools[{j}]"
        if not isinstance(tool, dict):
            raise _bad(f"{at} must be an object.", at)
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, bash, ...): nothing upstream can run it
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{at}.name is required.", at)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{at}.input_schema must be an object (a JSON schema).", at)
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """(OpenAI tool_choice or None, parallel_tool_calls or None)."""
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise _bad("'tool_choice' must be an object with a 'type'.", "tool_choice")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("'tool_choice.type' must be auto, any, tool (with a name) or none.",
               "tool_choice")


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{key}' must be a number.", key)
    return value


def chat_body(body: Any, *, counting: bool = False) -> dict[str, Any]:
    """The OpenAI chat body for an Anthropic Messages request (``counting``: a
    count_tokens request, which has no ``max_tokens``). The stream asks for usage so the
    answer's ``message_delta`` can carry it. Raises InvalidRequest (400) naming the field.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' is required and must be a non-empty string.", "model")
    out: dict[str, Any] = {"model": model.strip()}
    if not counting:
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _bad("'max_tokens' is required and must be an integer >= 1.", "max_tokens")
        out["max_tokens"] = max_tokens
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array of messages.", "messages")
    chat: list[dict[str, Any]] = []
    if body.get("system") is not None:
        _add_system(chat, _system(body["system"]))
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with 'role' and 'content'.", where)
        role = msg.get("role")
        if role == "user":
            chat.extend(_user(msg.get("content"), where))
        elif role == "assistant":
            chat.append(_assistant(msg.get("content"), where))
        elif role == "system":
            _add_system(chat, _system(msg.get("content"), f"{where}.content"))
        else:
            raise _bad(f"{where}.role must be 'user', 'assistant' or 'system'.", where)
    out["messages"] = chat
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    if stream and not counting:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    for key in ("temperature", "top_p"):
        value = _number(body, key)
        if value is not None:
            out[key] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'stop_sequences' must be an array of strings.", "stop_sequences")
        if stops:
            out["stop"] = stops
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            out["tools"] = tools
            choice, parallel = _tool_choice(body.get("tool_choice"))
            if choice is not None:
                out["tool_choice"] = choice
            if parallel is not None:
                out["parallel_tool_calls"] = parallel
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) \
            and metadata["user_id"]:
        out["user"] = metadata["user_id"]
    response_format = _response_format(body)
    if response_format is not None:
        out["response_format"] = response_format
    return out
