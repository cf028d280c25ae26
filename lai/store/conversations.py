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
from lai.store.models import Conversation, Message, RequestRecord

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
TITLE_LENGTH = 80
"""Characters of the first user message an unnamed conversation is listed by."""
FILTERS = ("source", "username", "key_name", "model")
"""What a list can be filtered by: the conversation's labels, or a key or model that
served one of its requests."""


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


def _filtered(stmt: Any, store: Store, q: str | None, filters: dict[str, str]) -> Any:
    # A NUL separates words: FTS5 ends a quoted string at one and PostgreSQL refuses it
    # in text (both were a 500 for ?q=%00); no stored text holds one.
    q = q.replace("\0", " ").strip() if q else q
    if q:
        stmt = stmt.where(_search_filter(store, q))
    for name, value in filters.items():
        if name == "source":
            stmt = stmt.where(Conversation.source == value)
        elif name == "username":
            stmt = stmt.where(Conversation.username == value)
        elif name in ("key_name", "model"):
            column = RequestRecord.key_name if name == "key_name" else RequestRecord.model_id
            served = select(RequestRecord.conversation_id).where(col(column) == value)
            stmt = stmt.where(col(Conversation.id).in_(served))
        else:
            raise ValueError(f"cannot filter conversations by {name!r}; "
                             f"use one of {', '.join(FILTERS)}")
    return stmt


def title_of(text: str | None) -> str | None:
    """The start of a message on one line, for listing an unnamed conversation."""
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[:TITLE_LENGTH - 1] + "…"


def _page_details(session: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per conversation of a page: ``title`` (its first user message) and the
    ``key_name`` and ``model`` of its latest request."""
    out: dict[str, dict[str, Any]] = {cid: {"title": None, "key_name": None, "model": None}
                                      for cid in ids}
    if not ids:
        return out
    first_user = (
        select(Message.conversation_id, sa.func.min(col(Message.position)).label("pos"))
        .where(col(Message.conversation_id).in_(ids), Message.role == "user")
        .group_by(col(Message.conversation_id))
        .subquery()
    )
    rows = session.execute(
        sa.select(col(Message.conversation_id), col(Message.content)).join(
            first_user, sa.and_(col(Message.conversation_id) == first_user.c.conversation_id,
                                col(Message.position) == first_user.c.pos))
    ).all()
    for cid, content in rows:
        out[cid]["title"] = title_of(content)
    latest = (
        select(RequestRecord.conversation_id, sa.func.max(col(RequestRecord.id)).label("rid"))
        .where(col(RequestRecord.conversation_id).in_(ids))
        .group_by(col(RequestRecord.conversation_id))
        .subquery()
    )
    rows = session.execute(
        sa.select(col(RequestRecord.conversation_id), col(RequestRecord.key_name),
                  col(RequestRecord.model_id), col(RequestRecord.model_requested))
        .join(latest, col(RequestRecord.id) == latest.c.rid)
    ).all()
    for cid, key_name, model_id, requested in rows:
        out[cid]["key_name"] = key_name
        out[cid]["model"] = model_id or requested
    return out


def list_conversations(
    store: Store,
    *,
    q: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    username: str | None = None,
    filters: dict[str, str] | None = None,
) -> ConversationPage:
    """Conversations by last activity, newest first; ``q`` searches message text (full
    text, every word) and display names; ``username`` filters by the X-Username label,
    ``filters`` by any of ``FILTERS`` (exact values).

    Each conversation also carries ``title`` (the start of its first user message, for
    an unnamed one), and the ``key_name`` and ``model`` of its latest request.
    Raises ``ValueError`` for a limit outside 1..100, a negative offset or an unknown
    filter.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset must be >= 0")
    wanted = dict(filters or {})
    if username is not None:
        wanted["username"] = username
    stmt = _filtered(select(Conversation), store, q, wanted)
    stmt = (
        stmt.order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .offset(offset)
        .limit(limit + 1)  # one more than asked tells whether there is a next page
    )
    with store.session() as session:
        rows = list(session.exec(stmt).all())[:limit + 1]
        page = rows[:limit]
        details = _page_details(session, [c.id for c in page])
        data = [{**conversation_dict(c), **details[c.id]} for c in page]
    return ConversationPage(data=data, has_more=len(rows) > limit)


def count_conversations(
    store: Store, *, q: str | None = None, filters: dict[str, str] | None = None
) -> int:
    """How many conversations there are (matching ``q`` and ``filters`` when given).
    Raises ``ValueError`` for an unknown filter."""
    stmt = _filtered(select(sa.func.count()).select_from(Conversation), store, q,
                     dict(filters or {}))
    with store.session() as session:
        return int(session.exec(stmt).one())


def get_conversation(store: Store, conversation_id: str) -> dict[str, Any]:
    """A conversation with ``"messages"`` in order and its ``title`` (see
    ``list_conversations``). Raises ``NotFound``."""
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
        out["title"] = next((title_of(m.content) for m in messages if m.role == "user"), None)
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
