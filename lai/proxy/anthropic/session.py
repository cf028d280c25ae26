"""Which conversation a Claude Code request is recorded in.

Claude Code sends ``X-Claude-Code-Session-Id`` on every request of one ``claude`` run:
the main agent loop's turns, but also side requests in the same session (a title for
the session, sub-agents started with its Agent tool), each with a history of its own.
Recording the whole session as one conversation would interleave those histories (the
store mirrors a conversation by position), and recording each request as its own
conversation stores the whole growing history again on every turn. So a request is
recorded in the conversation of its *thread*: the session id, then a short hash of the
text of the thread's first user message, which every later turn of that thread repeats
unchanged (``cache_control`` markers move between turns, so only the text counts).
"""

from __future__ import annotations

import hashlib
from typing import Any

from lai.proxy.context import CONVERSATION_ID, Headers

SESSION_HEADER = "X-Claude-Code-Session-Id"
_HASH_LENGTH = 8
_SESSION_MAX = 64 - 1 - _HASH_LENGTH
"""A session id longer than this would make the thread's id too long for a
conversation id (64 characters)."""


def _first_user_text(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(b["text"] for b in content if isinstance(b, dict)
                             and b.get("type") == "text" and isinstance(b.get("text"), str))
        return None
    return None


def thread_conversation(headers: Headers, body: Any) -> str | None:
    """The conversation id of this request's Claude Code thread, or None (no session
    header, an unusable one, an X-Conversation-ID that names the conversation itself,
    or no user message to tell the thread by)."""
    if (headers.get("X-Conversation-ID") or "").strip():
        return None
    session = (headers.get(SESSION_HEADER) or "").strip()
    if not session or len(session) > _SESSION_MAX or not CONVERSATION_ID.fullmatch(session):
        return None
    text = _first_user_text(body) if isinstance(body, dict) else None
    if text is None:
        return None
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{session}.{digest[:_HASH_LENGTH]}"
