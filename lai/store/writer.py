"""Turning finished requests into rows: the ``requests`` row and the conversation mirror.

``record_from_event`` flattens a ``RequestFinished`` into a plain, JSON-safe dict (the
recorder queues these, and can spill them to a file). ``write_batch`` writes a batch in
one transaction. It is idempotent: a record whose ``request_id`` is already stored is
skipped, so retrying a batch whose commit did happen (the connection broke just after)
duplicates nothing.

Mirroring: clients resend the whole history each turn. The stored messages are compared
with the request's by position (role and text; a system message matches on role alone,
because some clients put the time or working directory in it; a message whose text
content retention removed matches on role too); the request's messages past the common
prefix are appended, then the assistant's answer.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from lai.engine.events import RequestFinished
from lai.store.models import ID_LENGTH, Conversation, Message, RequestRecord

Record = dict[str, Any]


def _cut(value: str | None, length: int) -> str | None:
    # Labels come from client headers; an over-long one must not make the batch fail.
    return value if value is None else value[:length]


def content_text(content: Any) -> str | None:
    """The text of a message's ``content``: a string as is, text parts joined by blank lines.

    Image parts are left out (images are kept as files, referenced by ``image_refs``).
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        ]
        return "\n\n".join(texts)
    return str(content)


def _message(raw: dict[str, Any]) -> dict[str, Any]:
    image_refs = raw.get("image_refs")
    tool_calls = raw.get("tool_calls")
    return {
        "role": str(raw.get("role") or "user")[:32],
        "content": content_text(raw.get("content")),
        "name": _cut(raw.get("name"), 255),
        "tool_call_id": _cut(raw.get("tool_call_id"), 255),
        "tool_calls": list(tool_calls) if tool_calls else None,
        "image_refs": list(image_refs) if image_refs else None,
    }


def record_from_event(event: RequestFinished) -> Record:
    """The JSON-safe record of a finished request (no key material: name and prefix only)."""
    ctx = event.context
    return {
        "request_id": ctx.request_id[:ID_LENGTH],
        "endpoint": ctx.endpoint[:64],
        "key_name": _cut(ctx.key_name, 255),
        "key_prefix": _cut(ctx.key_prefix, 16),
        "conversation_id": _cut(ctx.conversation_id, ID_LENGTH),
        "username": _cut(ctx.username, 255),
        "source": _cut(ctx.source, 255),
        "display_name": _cut(ctx.display_name, 255),
        "model_requested": event.model_requested[:255],
        "model_id": _cut(event.model_id, 255),
        "provider_id": _cut(event.provider_id, 255),
        "failover_from": list(event.failover_from) or None,
        "streaming": event.streaming,
        "status": event.status,
        "http_status": event.http_status,
        "error_code": _cut(event.error_code, 64),
        "error_message": event.error_message,
        "finish_reason": _cut(event.finish_reason, 32),
        "prompt_tokens": event.usage.prompt_tokens,
        "completion_tokens": event.usage.completion_tokens,
        "tokens_estimated": event.usage.estimated,
        "cost_usd": event.cost_usd,
        "started_at": event.started_at,
        "queue_ms": event.queue_ms,
        "ttft_ms": event.ttft_ms,
        "duration_ms": event.duration_ms,
        "upstream_ms": event.upstream_ms,
        "estimate_ms": event.estimate_ms,
        "route_reason": _cut(event.route_reason, 500),
        "request_messages": [_message(m) for m in event.request_messages if isinstance(m, dict)],
        "response_message": (
            _message(event.response_message) if event.response_message is not None else None
        ),
    }


def _same(stored: _Stored, incoming: dict[str, Any]) -> bool:
    if stored.role != incoming["role"]:
        return False
    if stored.role == "system":
        return True
    if stored.tool_call_id != incoming["tool_call_id"]:
        return False
    if stored.removed:  # content retention took the text; the client still resends it
        return True
    # Clients resend an answer they received with whitespace trimmed, or null as "".
    return (stored.content or "").strip() == (incoming["content"] or "").strip()


@dataclass(slots=True)
class _Stored:
    role: str
    content: str | None
    tool_call_id: str | None
    removed: bool = False
    """The text was removed by ``server.content_retention_days``."""


@dataclass(slots=True)
class _Mirror:
    """A conversation as this batch sees it: the stored row (``conversation``, updated
    through the ORM) or the row to insert (``new``), and its messages so far."""

    conversation: Conversation | None
    new: dict[str, Any] | None = None
    messages: list[_Stored] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchResult:
    requests: int
    """Rows added to ``requests``."""
    messages: int
    """Rows added to ``messages``."""
    skipped: int
    """Records already stored (a retried batch)."""


def _epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    # Stay under bound-parameter limits.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_mirrors(session: Session, conversation_ids: Sequence[str]) -> dict[str, _Mirror]:
    """The stored conversations among ``conversation_ids`` with their messages, in two
    queries per 500 ids (not two per record)."""
    mirrors: dict[str, _Mirror] = {}
    for chunk in _chunks(conversation_ids):
        for conv in session.exec(select(Conversation).where(col(Conversation.id).in_(chunk))):
            mirrors[conv.id] = _Mirror(conv)
    found = list(mirrors)
    for chunk in _chunks(found):
        # sqlalchemy's select: sqlmodel's is typed for at most four columns.
        rows = session.execute(
            sa.select(col(Message.conversation_id), col(Message.role), col(Message.content),
                      col(Message.tool_call_id), col(Message.content_removed_at))
            .where(col(Message.conversation_id).in_(chunk))
            .order_by(col(Message.conversation_id), col(Message.position))
        )
        for cid, role, content, tool_call_id, removed_at in rows:
            mirrors[cid].messages.append(
                _Stored(role, content, tool_call_id, removed_at is not None))
    return mirrors


def _message_row(cid: str, rid: str, position: int, at: datetime, msg: dict[str, Any],
                 **answer: Any) -> dict[str, Any]:
    # Every row carries every column: one executemany needs the same keys in each.
    return {
        "conversation_id": cid, "position": position, "request_id": rid, "created_at": at,
        "role": msg["role"], "content": msg["content"], "name": msg["name"],
        "tool_call_id": msg["tool_call_id"], "tool_calls": msg["tool_calls"],
        "image_refs": msg["image_refs"], "model": answer.get("model"),
        "provider": answer.get("provider"), "tokens": answer.get("tokens"),
        "prompt_tokens": answer.get("prompt_tokens"),
        "completion_tokens": answer.get("completion_tokens"), "content_removed_at": None,
    }


def _mirror(mirrors: dict[str, _Mirror], rec: Record, out: list[dict[str, Any]]) -> int:
    """Append the message rows ``rec`` adds to its conversation to ``out`` and update the
    conversation; returns the number of messages added."""
    cid: str = rec["conversation_id"]
    rid: str = rec["request_id"]
    started = _epoch(rec["started_at"])
    finished = _epoch(rec["started_at"] + rec["duration_ms"] / 1000.0)
    mirror = mirrors.get(cid)
    if mirror is None:
        mirror = mirrors[cid] = _Mirror(None, {
            "id": cid, "created_at": started, "updated_at": finished,
            "username": rec["username"], "source": rec["source"],
            "display_name": rec["display_name"], "message_count": 0, "total_tokens": 0,
        })
    conv: Any = mirror.conversation if mirror.conversation is not None else mirror.new
    get = (lambda k: conv[k]) if mirror.new is not None else (lambda k: getattr(conv, k))
    put = conv.__setitem__ if mirror.new is not None else (lambda k, v: setattr(conv, k, v))
    # Labels fill gaps only: a later header must not undo a rename made through the API.
    for label in ("username", "source", "display_name"):
        if get(label) is None and rec[label] is not None:
            put(label, rec[label])

    incoming: list[dict[str, Any]] = rec["request_messages"]
    common = 0
    for stored, new in zip(mirror.messages, incoming, strict=False):
        if not _same(stored, new):
            break
        common += 1
    added = 0
    for msg in incoming[common:]:
        out.append(_message_row(cid, rid, len(mirror.messages), started, msg))
        mirror.messages.append(_Stored(msg["role"], msg["content"], msg["tool_call_id"]))
        added += 1
    answer = rec["response_message"]
    if answer is not None:
        answer = {**answer, "role": answer["role"] or "assistant"}
        out.append(_message_row(
            cid, rid, len(mirror.messages), finished, answer, model=rec["model_id"],
            provider=rec["provider_id"], tokens=rec["completion_tokens"],
            prompt_tokens=rec["prompt_tokens"], completion_tokens=rec["completion_tokens"],
        ))
        mirror.messages.append(_Stored(answer["role"], answer["content"],
                                       answer["tool_call_id"]))
        added += 1
    put("message_count", len(mirror.messages))
    put("total_tokens", get("total_tokens") + rec["prompt_tokens"] + rec["completion_tokens"])
    if finished > get("updated_at"):
        put("updated_at", finished)
    return added


_REQUEST_FIELDS = tuple(
    name for name in RequestRecord.model_fields if name not in ("id", "started_at")
)


def _existing_ids(session: Session, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(
            session.exec(
                select(RequestRecord.request_id).where(col(RequestRecord.request_id).in_(chunk))
            ).all()
        )
    return found


_CONVERSATIONS: sa.Table = Conversation.__table__  # type: ignore[attr-defined]
_MESSAGES: sa.Table = Message.__table__  # type: ignore[attr-defined]
_REQUESTS: sa.Table = RequestRecord.__table__  # type: ignore[attr-defined]


_ROWS_PER_STATEMENT = 64
"""Most rows in one SQLite INSERT (a power of two; fewer where the column count times
this passes the library's bound-parameter limit)."""


def _insert(session: Session, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``.

    PostgreSQL: one executemany (psycopg pipelines it). SQLite: multi-row
    ``INSERT ... VALUES (...), (...)`` statements of 2**k rows. The sqlite3 module
    releases the GIL around each statement step and must take it back after; an
    executemany steps once per row, and while the event loop thread runs Python each
    retake waits for the interpreter's switch interval (5 ms): under load the recorder
    wrote ~1,200 records a second where it writes ~5,000 alone (bench/recorder.py). One
    statement per 64 rows steps ~60 times less. Sizes are powers of two so the driver's
    prepared-statement cache holds a few shapes, not one per batch size.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        session.execute(sa.insert(table), rows)
        return
    names = tuple(rows[0])
    processors = _bind_processors(table, names, dialect)
    per_statement = _ROWS_PER_STATEMENT
    limit = conn.connection.dbapi_connection.getlimit(  # type: ignore[union-attr]
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    while per_statement > 1 and per_statement * len(names) > limit:
        per_statement //= 2
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = per_statement if left >= per_statement else 1 << (left.bit_length() - 1)
        params: list[Any] = []
        for row in rows[start : start + size]:
            for name, process in zip(names, processors, strict=True):
                value = row[name]
                params.append(process(value) if process is not None else value)
        sql = _values_sql(dialect.identifier_preparer, table.name, names, size)
        conn.exec_driver_sql(sql, tuple(params))
        start += size


_PROCESSORS: dict[tuple[str, tuple[str, ...], str], list[Any]] = {}


def _bind_processors(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect) -> list[Any]:
    """The functions SQLAlchemy turns each column's Python value with before binding
    (datetimes to text, JSON to text, ...), or None: stored exactly as the ORM stores."""
    key = (table.name, names, dialect.name)
    found = _PROCESSORS.get(key)
    if found is None:
        found = _PROCESSORS[key] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ]
    return found


@functools.lru_cache(maxsize=64)
def _values_sql(quoting: Any, table: str, names: tuple[str, ...], rows: int) -> str:
    columns = ", ".join(quoting.quote(name) for name in names)
    one = "(" + ", ".join(["?"] * len(names)) + ")"
    return f"INSERT INTO {quoting.quote(table)} ({columns}) VALUES " + ", ".join([one] * rows)


def write_batch(session: Session, records: Iterable[Record]) -> BatchResult:
    """Add ``records`` to ``session`` (the caller commits): one ``requests`` row each, and
    for successful requests with a conversation id, the conversation's new messages.

    Rows go in as plain inserts per table (conversations first, for the foreign key;
    ``_insert``), not one ORM object each: at hundreds of requests a second the ORM's
    per-row work, done in a thread, held the GIL long enough to slow the event loop.

    Raises what the database raises; nothing is committed then.
    """
    batch = list(records)
    already = _existing_ids(session, [r["request_id"] for r in batch])
    todo: list[Record] = []
    seen: set[str] = set()
    for rec in batch:
        rid = rec["request_id"]
        if rid in already or rid in seen:
            continue
        seen.add(rid)
        todo.append(rec)
    mirrored = [r for r in todo if r["status"] == "success" and r["conversation_id"]]
    mirrors = _load_mirrors(session, list(dict.fromkeys(r["conversation_id"] for r in mirrored)))
    request_rows = [
        {"started_at": _epoch(rec["started_at"]),
         # .get: a record spilled to a file by an older lai lacks the newer columns
         **{name: rec.get(name) for name in _REQUEST_FIELDS}}
        for rec in todo
    ]
    message_rows: list[dict[str, Any]] = []
    for rec in mirrored:
        _mirror(mirrors, rec, message_rows)
    new_conversations = [m.new for m in mirrors.values() if m.new is not None]
    _insert(session, _CONVERSATIONS, new_conversations)
    _insert(session, _REQUESTS, request_rows)
    _insert(session, _MESSAGES, message_rows)
    session.flush()  # the stored conversations' new counts and times
    return BatchResult(requests=len(todo), messages=len(message_rows),
                       skipped=len(batch) - len(todo))
