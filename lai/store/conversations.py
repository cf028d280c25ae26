"""Conversations as the API and the TUI show them: list, search, get, rename, delete.

Functions are blocking, take a :class:`~lai.store.db.Store` and open one session each;
async callers use ``asyncio.to_thread``. They answer plain dicts shaped like the HTTP API
(times as Unix seconds, as OpenAI's ``created_at``), so no ORM object leaves the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from lai.errors import NotFound
from lai.store.db import Store
from lai.store.fts import FTS_TABLE, PG_TSVECTOR, fts5_query
from lai.store.models import Conversation, Message

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """One page of a conversation list."""

    data: list[dict[str, Any]]
    has_more: bool


def _ts(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def conversation_dict(conv: Conversation) -> dict[str, Any]:
    """The API shape of a conversation (without its messages)."""
    return {
        "id": conv.id,
        "object": "conversation",
        "created_at": _ts(conv.created_at),
        "updated_at": _ts(conv.updated_at),
        "username": conv.username,
        "source": conv.source,
        "display_name": conv.display_name,
        "message_count": conv.message_count,
        "total_tokens": conv.total_tokens,
    }


def message_dict(msg: Message) -> dict[str, Any]:
    """The API shape of a message: OpenAI's fields plus who answered and at what cost."""
    out: dict[str, Any] = {
        "id": msg.id,
        "object": "conversation.message",
        "position": msg.position,
        "role": msg.role,
        "content": msg.content,
        "model": msg.model,
        "provider": msg.provider,
        "tokens": msg.tokens,
        "prompt_tokens": msg.prompt_tokens,
        "completion_tokens": msg.completion_tokens,
        "image_refs": msg.image_refs or [],
        "request_id": msg.request_id,
        "created_at": _ts(msg.created_at),
    }
    if msg.tool_calls:
        out["tool_calls"] = msg.tool_calls
    if msg.tool_call_id is not None:
        out["tool_call_id"] = msg.tool_call_id
    if msg.name is not None:
        out["name"] = msg.name
    if msg.content_removed_at is not None:  # server.content_retention_days took the text
        out["content_removed_at"] = _ts(msg.content_removed_at)
    return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_filter(store: Store, q: str) -> sa.ColumnElement[bool]:
    """Conversations with a message containing every word of ``q``, or whose display
    name contains ``q``."""
    name_match = sa.func.lower(col(Conversation.display_name)).like(
        f"%{_like_escape(q.lower())}%", escape="\\"
    )
    if store.dialect == "sqlite":
        query = fts5_query(q)
        if query is None:
            return name_match
        hits = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :fts_q")
        matching = select(Message.conversation_id).where(
            col(Message.id).in_(hits.bindparams(fts_q=query).columns(sa.column("rowid")))
        )
    elif store.dialect == "postgresql":
        matching = select(Message.conversation_id).where(
            sa.text(f"{PG_TSVECTOR} @@ plainto_tsquery('simple', :ts_q)").bindparams(ts_q=q)
        )
    else:  # another backend: a plain substring match, slow but correct
        matching = select(Message.conversation_id).where(
            sa.func.lower(col(Message.content)).like(f"%{_like_escape(q.lower())}%", escape="\\")
        )
    return sa.or_(col(Conversation.id).in_(matching), name_match)


def list_conversations(
    store: Store,
    *,
    q: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    username: str | None = None,
) -> ConversationPage:
    """Conversations by last activity, newest first; ``q`` searches message text (full
    text, every word) and display names; ``username`` filters by the X-Username label.

    Raises ``ValueError`` for a limit outside 1..100 or a negative offset.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset must be >= 0")
    stmt = select(Conversation)
    if q and q.strip():
        stmt = stmt.where(_search_filter(store, q.strip()))
    if username is not None:
        stmt = stmt.where(Conversation.username == username)
    stmt = (
        stmt.order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .offset(offset)
        .limit(limit + 1)  # one more than asked tells whether there is a next page
    )
    with store.session() as session:
        rows = list(session.exec(stmt).all())
    return ConversationPage(
        data=[conversation_dict(c) for c in rows[:limit]], has_more=len(rows) > limit
    )


def count_conversations(store: Store, *, q: str | None = None) -> int:
    """How many conversations there are (matching ``q`` when given)."""
    stmt = select(sa.func.count()).select_from(Conversation)
    if q and q.strip():
        stmt = stmt.where(_search_filter(store, q.strip()))
    with store.session() as session:
        return int(session.exec(stmt).one())


def get_conversation(store: Store, conversation_id: str) -> dict[str, Any]:
    """A conversation with ``"messages"`` in order. Raises ``NotFound``."""
    with store.session() as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None:
            raise _not_found(conversation_id)
        messages = session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.position))
        ).all()
        out = conversation_dict(conv)
        out["messages"] = [message_dict(m) for m in messages]
        return out


def rename_conversation(
    store: Store, conversation_id: str, display_name: str | None
) -> dict[str, Any]:
    """Set (or with None clear) the display name; answers the conversation without its
    messages. Raises ``NotFound``."""
    with store.write_session() as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None:
            raise _not_found(conversation_id)
        conv.display_name = display_name
        session.add(conv)
        session.flush()
        return conversation_dict(conv)


def delete_conversation(store: Store, conversation_id: str) -> None:
    """Delete a conversation and its messages, then run ``store.on_conversation_deleted``
    (image files). ``requests`` rows stay for usage statistics. Raises ``NotFound``."""
    with store.write_session() as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None:
            raise _not_found(conversation_id)
        # Explicitly, not only by ON DELETE CASCADE: SQLite enforces it only with
        # foreign keys on, and a connection made by another tool may not have them.
        session.execute(sa.delete(Message).where(col(Message.conversation_id) == conversation_id))
        session.delete(conv)
    store.conversation_deleted(conversation_id)


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation with id {conversation_id!r}.", param="id")
