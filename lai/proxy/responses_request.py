"""An OpenAI Responses request (``POST /v1/responses``) as an OpenAI chat body.

Pure translation, no IO: ``to_chat(body, history)`` returns the chat body the engine
serves and what the answer side needs to know (``ResponsesRequest``). ``history`` is the
chat conversation of a stored response that ``previous_response_id`` continues.

What is mapped (docs/api.md has the user's version):

- ``instructions`` -> a leading system message (not carried into a continued response,
  as OpenAI does); ``input`` as a string -> one user message.
- ``message`` items (also without ``type``): roles user, assistant, system and
  developer (developer becomes system: local chat templates know no developer role);
  parts ``input_text``/``output_text``/``refusal`` -> text, ``input_image`` with an
  ``image_url`` -> an ``image_url`` part.
- ``function_call`` / ``custom_tool_call`` -> an assistant message's ``tool_calls``
  (consecutive calls join one message); ``function_call_output`` /
  ``custom_tool_call_output`` -> ``tool`` messages.
- ``reasoning`` items are dropped: a chat upstream has no place for them (Codex sends
  back the reasoning it received, which lai made from the upstream's
  ``reasoning_content``).
- ``tools`` (function, custom, namespace; hosted tools dropped) as
  ``lai.proxy.responses_tools`` says; call items that carry a ``namespace`` go upstream
  under the member's joined chat name.
- ``tool_choice``, ``parallel_tool_calls``, ``max_output_tokens`` (-> ``max_tokens``),
  ``temperature``, ``top_p``, ``text.format`` (``json_schema``/``json_object`` ->
  ``response_format``). ``reasoning``, ``include``, ``store``, ``prompt_cache_key``,
  ``truncation``, ``metadata``, ``user``, ``service_tier``, ``safety_identifier`` and
  ``text.verbosity`` do not reach the upstream.

Refused with a 400 naming the field: other item kinds (``item_reference``,
``input_file`` parts, hosted tools' call items), ``background``, ``conversation`` and
``prompt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from lai.errors import InvalidRequest
from lai.proxy.responses_tools import (
    CUSTOM_ARGUMENT,
    ToolNames,
    chat_name,
    chat_tool_choice,
    chat_tools,
)

REFUSED_ITEMS = frozenset({
    "item_reference", "web_search_call", "file_search_call", "computer_call",
    "computer_call_output", "code_interpreter_call", "image_generation_call", "mcp_call",
    "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "local_shell_call",
    "local_shell_call_output",
})
"""Input items lai cannot turn into chat messages (hosted tools' calls, references to
items stored by OpenAI)."""

_UNSUPPORTED_FIELDS = {
    "background": "background responses are not supported by lai",
    "conversation": "the Conversations API is not supported by lai; use "
                    "previous_response_id or send the whole input",
    "prompt": "prompt templates are not supported by lai",
}

@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """What the answer side needs: the chat body, and what the response object echoes."""

    chat: dict[str, Any]
    """The chat body for the engine."""
    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    input_messages: list[dict[str, Any]]
    """This request's input as chat messages, without the instructions (what a stored
    response keeps, after the history it continued)."""
    tool_names: ToolNames = field(default_factory=ToolNames)
    """What the chat tools' names stand for: freeform tools (their calls come back as
    ``custom_tool_call`` items) and namespace members (items with ``namespace``)."""
    echo: dict[str, Any] = field(default_factory=dict)
    """Request fields the response object repeats (instructions, tools, tool_choice...)."""


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where} must be a string.", where)
    return value


def _parts(content: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    """A message's content as chat content: a string, or parts when it holds images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content parts.", where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _text(part.get("text"), f"{at}.text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _text(part.get("refusal"), f"{at}.refusal")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{at}: lai needs an image_url (a data: or http URL); "
                           f"file_id images are stored by OpenAI, not by lai.", at)
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str) and part["detail"] != "auto":
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            raise _bad(f"{at}: input_file parts are not supported by lai.", at)
        else:
            raise _bad(f"{at}.type must be input_text, output_text, refusal or input_image"
                       f" (got {kind!r}).", at)
    if role != "user" or all(p["type"] == "text" for p in parts):
        # Only user messages may carry images; everything else is plain text.
        texts = [p["text"] for p in parts if p["type"] == "text"]
        return "".join(texts) if role == "assistant" else "\n\n".join(texts)
    return parts


def _tool_output(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [p.get("text") for p in value if isinstance(p, dict)
                 and p.get("type") in ("input_text", "output_text", "text")]
        return "\n\n".join(t for t in texts if isinstance(t, str))
    raise _bad(f"{where}.output must be a string or an array of content parts.", where)


class _Messages:
    """Chat messages built item by item; consecutive tool calls join one assistant
    message, as chat APIs expect parallel calls."""

    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []

    def add(self, message: dict[str, Any]) -> None:
        self.out.append(message)

    def call(self, call_id: str, name: str, arguments: str) -> None:
        last = self.out[-1] if self.out else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            self.out.append(last)
        last.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )


def _call_name(item: dict[str, Any], where: str) -> str:
    """The chat function name of a call item (a namespace member's joined name)."""
    name = _text(item.get("name"), f"{where}.name")
    namespace = item.get("namespace")
    if namespace is None or namespace == "":
        return name
    return chat_name(_text(namespace, f"{where}.namespace"), name)


def input_messages(items: Any) -> list[dict[str, Any]]:
    """The ``input`` of a Responses request as chat messages. Raises InvalidRequest."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("'input' must be a string or an array of input items.", "input")
    msgs = _Messages()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object.", where)
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise _bad(f"{where}.type must be a string.", f"{where}.type")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}.role must be user, assistant, system or developer.",
                           f"{where}.role")
            chat_role = "system" if role == "developer" else role
            content = _parts(item.get("content"), chat_role, where)
            last = msgs.out[-1] if msgs.out else None
            if (chat_role == "assistant" and last is not None and last["role"] == "assistant"
                    and "tool_calls" not in last and isinstance(content, str)):
                last["content"] = (last["content"] or "") + content
                continue
            msgs.add({"role": chat_role, "content": content})
        elif kind == "function_call":
            arguments = item.get("arguments", "")
            msgs.call(_text(item.get("call_id"), f"{where}.call_id"), _call_name(item, where),
                      _text(arguments, f"{where}.arguments"))
        elif kind == "custom_tool_call":
            text = _text(item.get("input", ""), f"{where}.input")
            msgs.call(_text(item.get("call_id"), f"{where}.call_id"), _call_name(item, where),
                      orjson.dumps({CUSTOM_ARGUMENT: text}).decode())
        elif kind in ("function_call_output", "custom_tool_call_output"):
            msgs.add({"role": "tool",
                      "tool_call_id": _text(item.get("call_id"), f"{where}.call_id"),
                      "content": _tool_output(item.get("output"), where)})
        elif kind == "reasoning":
            continue
        elif kind in REFUSED_ITEMS:
            raise _bad(f"{where}: input items of type {kind!r} are not supported by lai "
                       f"(it runs no hosted tools and keeps no OpenAI items).", f"{where}.type")
        else:
            raise _bad(f"{where}.type {kind!r} is not a known input item type.",
                       f"{where}.type")
    return msgs.out


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad("'text' must be an object.", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad("'text.format' must be an object.", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        if not isinstance(schema.get("schema"), dict):
            raise _bad("'text.format.schema' must be a JSON schema object.", "text.format.schema")
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("'text.format.type' must be text, json_object or json_schema.", "text.format.type")


def _number(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _bad(f"'{key}' must be a number.", key)
    return value


def to_chat(body: Any, history: list[dict[str, Any]] | None = None) -> ResponsesRequest:
    """Translate a Responses request body into a chat body (see the module docstring).

    ``history`` is the stored conversation ``previous_response_id`` names (the caller
    looks it up). Raises InvalidRequest (400) for what cannot be translated.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    for key, why in _UNSUPPORTED_FIELDS.items():
        if body.get(key):
            raise _bad(f"'{key}': {why}.", key)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' is required and must be a non-empty string "
                   "(\"auto\", a model id, a provider id or provider/model).", "model")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    store = body.get("store", True)
    if store is not None and not isinstance(store, bool):
        raise _bad("'store' must be true or false.", "store")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise _bad("'previous_response_id' must be a response id.", "previous_response_id")
    if "input" not in body or body["input"] is None:
        raise _bad("'input' is required: a string or an array of input items.", "input")
    new = input_messages(body["input"])
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        messages.append({"role": "system", "content": _text(instructions, "instructions")})
    messages.extend(history or ())
    messages.extend(new)
    if not messages:
        raise _bad("'input' is empty: send at least one message.", "input")
    messages = _merge_system(messages)

    chat: dict[str, Any] = {"model": model.strip(), "messages": messages}
    tools, tool_names = chat_tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        names = {t["function"]["name"] for t in tools}
        choice = chat_tool_choice(body.get("tool_choice"), names)
        if choice is not None:
            chat["tool_choice"] = choice
        parallel = body.get("parallel_tool_calls")
        if parallel is not None:
            if not isinstance(parallel, bool):
                raise _bad("'parallel_tool_calls' must be true or false.", "parallel_tool_calls")
            chat["parallel_tool_calls"] = parallel
    elif isinstance(body.get("tool_choice"), dict):
        chat_tool_choice(body["tool_choice"], set())
    max_output = body.get("max_output_tokens")
    if max_output is not None:
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
            raise _bad("'max_output_tokens' must be an integer >= 1.", "max_output_tokens")
        chat["max_tokens"] = max_output
    for key in ("temperature", "top_p"):
        if _number(body, key) is not None:
            chat[key] = body[key]
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if stream:
        chat["stream"] = True
        # So that the engine's stream parser passes the usage chunk on to this face.
        chat["stream_options"] = {"include_usage": True}
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_output,
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": previous,
        "reasoning": body.get("reasoning") if isinstance(body.get("reasoning"), dict)
        else {"effort": None, "summary": None},
        "temperature": body.get("temperature"),
        "text": body.get("text") if isinstance(body.get("text"), dict)
        else {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user") if isinstance(body.get("user"), str) else None,
        "store": store is not False,
    }
    return ResponsesRequest(
        chat=chat, model=model.strip(), stream=bool(stream), store=store is not False,
        previous_response_id=previous, input_messages=new, tool_names=tool_names, echo=echo,
    )


def _merge_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent system messages as one: many local chat templates accept only one
    system message, at the start (Codex sends instructions and a developer message)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        prev = out[-1] if out else None
        if (prev is not None and m["role"] == "system" and prev["role"] == "system"
                and isinstance(m["content"], str) and isinstance(prev["content"], str)):
            out[-1] = {"role": "system", "content": f"{prev['content']}\n\n{m['content']}"}
        else:
            out.append(m)
    return out
