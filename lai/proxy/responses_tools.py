"""The ``tools`` of an OpenAI Responses request as chat function tools, and the way back.

Pure translation, no IO. ``chat_tools(tools)`` gives the chat tools and a ``ToolNames``
table that the answer side uses to turn a chat tool call back into the item the client
expects:

- ``function`` tools -> chat function tools (``strict`` is not sent on);
- ``custom`` (freeform) tools -> a function with one string argument ``input`` (a
  grammar, if given, goes into the description); their calls come back as
  ``custom_tool_call`` items;
- ``namespace`` tools (a named group of function and custom tools, as Codex sends its
  sub-agent tools) -> one chat function per member, named ``{namespace}__{name}``
  (a chat function name allows no dot); their calls come back as items with
  ``namespace`` and the member's own ``name``, and history items that carry a
  ``namespace`` go upstream under the joined name again;
- hosted tools (web search, file search, computer use, code interpreter, image
  generation, MCP, local shell) are dropped with a warning in lai's log: no upstream
  behind lai runs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from lai.errors import InvalidRequest

log = logging.getLogger("lai.proxy.responses")

HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "file_search",
    "computer_use_preview", "computer_use", "code_interpreter", "image_generation", "mcp",
    "local_shell",
})
"""Tools that OpenAI runs on its own servers; nothing behind lai can."""

CUSTOM_ARGUMENT = "input"
"""The one string argument a freeform (``custom``) tool becomes."""

NAMESPACE_SEPARATOR = "__"
"""Joins a namespace and a member's name into one chat function name."""


def chat_name(namespace: str | None, name: str) -> str:
    """The chat function name of tool ``name`` (in ``namespace``, if any)."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class ToolNames:
    """What the chat names of a request's tools stand for."""

    custom: frozenset[str] = frozenset()
    """Chat names of freeform tools: their calls come back as ``custom_tool_call``."""
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Chat name -> (namespace, the member's own name), for namespace tools."""

    def item_name(self, name: str) -> tuple[str | None, str]:
        """(namespace or None, name) of the item a call of chat function ``name`` is."""
        return self.namespaced.get(name, (None, name))


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{where} must be a non-empty string.", where)
    return value


def _function_tool(tool: dict[str, Any], name: str) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    params = tool.get("parameters")
    fn["parameters"] = params if isinstance(params, dict) else {"type": "object",
                                                                "properties": {}}
    return {"type": "function", "function": fn}


def _custom_tool(tool: dict[str, Any], name: str) -> dict[str, Any]:
    description = tool.get("description") or ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax = fmt.get("syntax", "")
        definition = fmt.get("definition", "")
        description = (f"{description}\n\nThe input must follow this {syntax} grammar:\n"
                       f"{definition}").strip()
    return {"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_ARGUMENT: {"type": "string",
                                             "description": "The tool's freeform input."}},
            "required": [CUSTOM_ARGUMENT],
        },
    }}


class _Builder:
    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        self.custom: set[str] = set()
        self.namespaced: dict[str, tuple[str, str]] = {}
        self.dropped: list[str] = []

    def member(self, tool: Any, where: str, namespace: str | None,
               description: str | None = None) -> None:
        """One function or custom tool (of ``namespace``, when given)."""
        if not isinstance(tool, dict):
            raise _bad(f"{where} must be an object.", where)
        kind = tool.get("type")
        if kind not in ("function", "custom"):
            raise _bad(f"{where}.type must be function or custom (got {kind!r}).",
                       f"{where}.type")
        own = _name(tool.get("name"), f"{where}.name")
        name = chat_name(namespace, own)
        made = _function_tool(tool, name) if kind == "function" \
            else _custom_tool(tool, name)
        if description:
            fn = made["function"]
            fn["description"] = f"({namespace}: {description}) {fn.get('description', '')}"
        self.out.append(made)
        if kind == "custom":
            self.custom.add(name)
        if namespace:
            self.namespaced[name] = (namespace, own)

    def namespace(self, tool: dict[str, Any], where: str) -> None:
        namespace = _name(tool.get("name"), f"{where}.name")
        members = tool.get("tools")
        if not isinstance(members, list):
            raise _bad(f"{where}.tools must be an array of function or custom tools.",
                       f"{where}.tools")
        description = tool.get("description")
        description = description.strip() if isinstance(description, str) else None
        for j, member in enumerate(members):
            self.member(member, f"{where}.tools[{j}]", namespace, description)


def chat_tools(tools: Any) -> tuple[list[dict[str, Any]], ToolNames]:
    """The chat tools for a Responses ``tools`` array, and what their names stand for.
    Raises InvalidRequest (400) naming the tool that cannot be translated."""
    if tools is None:
        return [], ToolNames()
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")
    built = _Builder()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"{where} must be an object.", where)
        kind = tool.get("type")
        if kind in ("function", "custom"):
            built.member(tool, where, None)
        elif kind == "namespace":
            built.namespace(tool, where)
        elif isinstance(kind, str) and (kind in HOSTED_TOOLS or kind.startswith("web_search")):
            built.dropped.append(kind)
        else:
            raise _bad(f"{where}.type must be function, custom or namespace (got {kind!r}).",
                       f"{where}.type")
    if built.dropped:
        log.warning("responses: dropped hosted tools %s (no upstream behind lai runs them)",
                    ", ".join(built.dropped))
    return built.out, ToolNames(frozenset(built.custom), built.namespaced)


def chat_tool_choice(choice: Any, names: set[str]) -> Any:
    """The chat ``tool_choice`` for a Responses one; ``names`` are the chat tools' names.
    Raises InvalidRequest."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom"):
            name = _name(choice.get("name"), "tool_choice.name")
            namespace = choice.get("namespace")
            name = chat_name(namespace if isinstance(namespace, str) else None, name)
            if name not in names:
                raise _bad(f"tool_choice names the tool {name!r}, which is not in 'tools'.",
                           "tool_choice")
            return {"type": "function", "function": {"name": name}}
        if kind == "allowed_tools":
            mode = choice.get("mode", "auto")
            return mode if mode in ("auto", "required") else "auto"
        if isinstance(kind, str) and kind in HOSTED_TOOLS:
            raise _bad(f"tool_choice asks for the hosted tool {kind!r}, which lai cannot run.",
                       "tool_choice")
    raise _bad("tool_choice must be auto, none, required or a function/custom tool.",
               "tool_choice")
