"""A chat answer as an OpenAI Responses answer: the ``response`` object and its items.

Pure translation, no IO. ``response_from_completion`` turns a non-streamed chat
completion into a ``response`` object; ``lai.proxy.responses_stream`` does the same for
a streamed answer, event by event, with the item builders here. Output items:
``reasoning`` (from the upstream's ``reasoning_content``/``reasoning``), ``message``
(``output_text``), ``function_call``, and ``custom_tool_call`` for freeform tools
(with ``namespace`` for a namespace tool's member).
``assistant_message`` turns output items back into the chat message a continuation
(``previous_response_id``) sends upstream.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from lai.proxy.responses_request import ResponsesRequest
from lai.proxy.responses_tools import CUSTOM_ARGUMENT, ToolNames, chat_name


def new_id(prefix: str) -> str:
    """A fresh id with the Responses prefix (``resp``, ``msg``, ``fc``, ``ctc``, ``rs``)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def response_usage(raw: Any) -> dict[str, Any] | None:
    """Chat ``usage`` as Responses ``usage``; None when there is none usable."""
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    out_details = raw.get("completion_tokens_details")
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        "total_tokens": prompt + completion,
    }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    """An assistant ``message`` output item with one ``output_text`` part."""
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [text_part(text)]}


def reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    """A ``reasoning`` output item whose content is the upstream's reasoning text."""
    return {"type": "reasoning", "id": item_id, "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else []}


def reasoning_delta(delta: dict[str, Any]) -> str | None:
    """The reasoning text of a chat delta or message: ``reasoning_content`` (vLLM,
    llama.cpp, DeepSeek) or ``reasoning`` (OpenRouter, Ollama)."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str,
              tools: ToolNames) -> dict[str, Any]:
    """A ``function_call`` item for a call of chat function ``name``, or for a freeform
    tool a ``custom_tool_call`` item; a namespace member's item carries ``namespace``
    and the member's own name."""
    namespace, own = tools.item_name(name)
    item: dict[str, Any]
    if name in tools.custom:
        item = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": own,
                "input": custom_input(arguments), "status": status}
    else:
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": own,
                "arguments": arguments, "status": status}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """The freeform input of a custom tool from the function arguments it was called
    with (``{"input": "..."}``); arguments that are not that object are the input."""
    try:
        doc = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(doc, dict) and isinstance(doc.get(CUSTOM_ARGUMENT), str):
        return str(doc[CUSTOM_ARGUMENT])
    return arguments


def incomplete_details(finish_reason: str | None) -> dict[str, str] | None:
    """``incomplete_details`` for a chat finish reason that cut the answer short."""
    if finish_reason == "length":
        return {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return {"reason": "content_filter"}
    return None


def response_object(
    req: ResponsesRequest, response_id: str, created_at: int, *, status: str,
    output: list[dict[str, Any]], usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None, incomplete: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``response`` object: the answer plus the request fields OpenAI echoes."""
    return {
        "id": response_id, "object": "response", "created_at": created_at,
        "status": status, "error": error, "incomplete_details": incomplete,
        "model": req.model, "output": output, "usage": usage,
        **req.echo,
    }


def assistant_message(output: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The chat message an answer's output items make (what a continuation sends back)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        if item["type"] == "message":
            texts.extend(p.get("text", "") for p in item["content"])
        elif item["type"] == "function_call":
            calls.append({"id": item["call_id"], "type": "function", "function": {
                "name": chat_name(item.get("namespace"), item["name"]),
                "arguments": item["arguments"]}})
        elif item["type"] == "custom_tool_call":
            calls.append({"id": item["call_id"], "type": "function", "function": {
                "name": chat_name(item.get("namespace"), item["name"]),
                "arguments": orjson.dumps({CUSTOM_ARGUMENT: item["input"]}).decode()}})
    if not texts and not calls:
        return None
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def response_from_completion(
    req: ResponsesRequest, completion: dict[str, Any], response_id: str, created_at: int
) -> dict[str, Any]:
    """The ``response`` object for a non-streamed chat completion (already checked by
    the engine to have choices)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    raw_message = choice.get("message")
    message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
    output: list[dict[str, Any]] = []
    reasoning = reasoning_delta(message)
    if reasoning:
        output.append(reasoning_item(new_id("rs"), reasoning, "completed"))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(new_id("msg"), content, "completed"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        name = str(fn.get("name") or "")
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode() if arguments is not None else ""
        custom = name in req.tool_names.custom
        output.append(call_item(new_id("ctc" if custom else "fc"),
                                str(call.get("id") or new_id("call")), name, arguments,
                                "completed", req.tool_names))
    finish = choice.get("finish_reason")
    incomplete = incomplete_details(finish if isinstance(finish, str) else None)
    return response_object(
        req, response_id, created_at, status="incomplete" if incomplete else "completed",
        output=output, usage=response_usage(completion.get("usage")), incomplete=incomplete,
    )
