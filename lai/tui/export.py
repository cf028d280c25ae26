"""Writing a conversation to a file: Markdown for people, JSON for programs.

The format follows the file name (``.md``/``.markdown`` or ``.json``). The JSON is the
``GET /v1/conversations/{id}`` object as it is; the Markdown has a heading per message
with who answered, tokens and time, tool calls as JSON blocks and images by path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

FORMATS = {".md": "markdown", ".markdown": "markdown", ".json": "json"}


def _when(ts: int | float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def to_markdown(conv: dict[str, Any], image_path: Callable[[Any], str]) -> str:
    """The conversation as a Markdown document (every message, in order)."""
    title = conv.get("display_name") or conv.get("title") or conv["id"]
    lines = [f"# {title}", ""]
    facts = [f"id `{conv['id']}`"]
    for label, key in (("source", "source"), ("user", "username")):
        if conv.get(key):
            facts.append(f"{label} {conv[key]}")
    facts.append(f"{len(conv.get('messages') or ())} messages")
    facts.append(f"{conv.get('total_tokens', 0)} tokens")
    lines += [" · ".join(facts), ""]
    for msg in conv.get("messages") or ():
        head = f"## {msg.get('role', '?')}"
        details = []
        if msg.get("provider") or msg.get("model"):
            details.append(f"{msg.get('provider') or '?'} · {msg.get('model') or '?'}")
        if msg.get("tokens") is not None:
            details.append(f"{msg['tokens']} tokens")
        if msg.get("created_at") is not None:
            details.append(_when(msg["created_at"]))
        lines.append(head + (f" ({', '.join(details)})" if details else ""))
        lines.append("")
        content = msg.get("content")
        if isinstance(content, str) and content:
            lines += [content, ""]
        elif content:
            lines += ["```json", json.dumps(content, indent=2, ensure_ascii=False), "```", ""]
        if msg.get("tool_calls"):
            lines += ["Tool calls:", "", "```json",
                      json.dumps(msg["tool_calls"], indent=2, ensure_ascii=False), "```", ""]
        for ref in msg.get("image_refs") or ():
            lines += [f"Image: `{image_path(ref)}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_conversation(conv: dict[str, Any], path: str,
                        image_path: Callable[[Any], str]) -> Path:
    """Write ``conv`` (with its ``messages``) to ``path``; answers the absolute path.

    Raises ValueError for a name that is neither ``.md`` nor ``.json`` and
    FileExistsError for an existing file (nothing is overwritten); OSError as the
    file system raises it.
    """
    target = Path(os.path.expanduser(path.strip())).resolve()
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ValueError(f"Export to a .md or .json file, not {target.name!r}.")
    text = (json.dumps(conv, indent=2, ensure_ascii=False) + "\n" if kind == "json"
            else to_markdown(conv, image_path))
    # "x": never overwrite what the operator already has there.
    with open(target, "x", encoding="utf-8") as out:
        out.write(text)
    return target
