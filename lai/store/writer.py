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

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from lai.engine.events import RequestFinished
from lai.store.bulk import insert_rows, plan_each_time, present
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
    """A conversation as this batch sees it: its row (the stored values, or the row to
    insert when ``stored`` is false) and its messages so far."""

    row: dict[str, Any]
    """The values of ``_CONVERSATION_COLUMNS``, times as POSIX timestamps."""
    stored: bool
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


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    # Stay under bound-parameter limits.
    for start in range(0, len(items), size):
        yield items[start : start + size]


_CONVERSATIONS: sa.Table = Conversation.__table__  # type: ignore[attr-defined]
_MESSAGES: sa.Table = Message.__table__  # type: ignore[attr-defined]
_REQUESTS: sa.Table = RequestRecord.__table__  # type: ignore[attr-defined]

_CONVERSATION_COLUMNS = (
    "id", "created_at", "updated_at", "username", "source", "display_name",
    "message_count", "total_tokens",
)
_conversation_values = operator.itemgetter(*_CONVERSATION_COLUMNS)
_LABELS = ("username", "source", "display_name")
_LOAD_CONVERSATIONS = sa.select(*(_CONVERSATIONS.c[n] for n in _CONVERSATION_COLUMNS)).where(
    _CONVERSATIONS.c.id.in_(sa.bindparam("ids", expanding=True)))
_LOAD_MESSAGES = (
    sa.select(_MESSAGES.c.conversation_id, _MESSAGES.c.role, _MESSAGES.c.content,
              _MESSAGES.c.tool_call_id, _MESSAGES.c.content_removed_at)
    .where(_MESSAGES.c.conversation_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_MESSAGES.c.conversation_id, _MESSAGES.c.position)
)
_UPDATE_CONVERSATION = (
    sa.update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == sa.bindparam("b_id"))
    .values(
        # Labels fill gaps only, even against a rename committed since they were read.
        **{label: sa.func.coalesce(_CONVERSATIONS.c[label], sa.bindparam(f"b_{label}",
                                   type_=_CONVERSATIONS.c[label].type))
           for label in _LABELS},
        **{name: sa.bindparam(f"b_{name}", type_=_CONVERSATIONS.c[name].type)
           for name in ("updated_at", "message_count", "total_tokens")},
    )
)


def _load_mirrors(connection: sa.Connection, conversation_ids: Sequence[str]
                  ) -> dict[str, _Mirror]:
    """The stored conversations among ``conversation_ids`` with their messages: one
    query per 500 ids to find them, two more per 500 found (not two per record)."""
    found: list[str] = []
    for chunk in _chunks(conversation_ids):
        found.extend(present(connection, _CONVERSATIONS, "id", chunk))
    mirrors: dict[str, _Mirror] = {}
    for chunk in _chunks(found):
        for values in connection.execute(_LOAD_CONVERSATIONS, {"ids": list(chunk)}):
            row = dict(zip(_CONVERSATION_COLUMNS, values, strict=True))
            row["created_at"] = _timestamp(row["created_at"])
            row["updated_at"] = _timestamp(row["updated_at"])
            mirrors[row["id"]] = _Mirror(row, stored=True)
        for cid, role, content, tool_call_id, removed_at in connection.execute(
                _LOAD_MESSAGES, {"ids": list(chunk)}):
            mirrors[cid].messages.append(
                _Stored(role, content, tool_call_id, removed_at is not None))
    return mirrors


def _update_stored(connection: sa.Connection, mirrors: Iterable[_Mirror]) -> None:
    params = [{**{f"b_{name}": m.row[name] for name in
                  ("id", *_LABELS, "message_count", "total_tokens")},
               "b_updated_at": _epoch(m.row["updated_at"])}
              for m in mirrors if m.stored]
    if params:
        connection.execute(_UPDATE_CONVERSATION, params)


_MESSAGE_COLUMNS = (
    "conversation_id", "position", "request_id", "created_at", "role", "content", "name",
    "tool_call_id", "tool_calls", "image_refs", "model", "provider", "tokens",
    "prompt_tokens", "completion_tokens",
)
"""The columns of a message row as ``_mirror`` makes it (``content_removed_at`` is left
NULL)."""


def _mirror(mirrors: dict[str, _Mirror], rec: Record, out: list[tuple[Any, ...]]) -> int:
    """Append the message rows ``rec`` adds to its conversation to ``out`` and update the
    conversation; returns the number of messages added."""
    cid: str = rec["conversation_id"]
    rid: str = rec["request_id"]
    started: float = rec["started_at"]
    finished = started + rec["duration_ms"] / 1000.0
    mirror = mirrors.get(cid)
    if mirror is None:
        mirror = mirrors[cid] = _Mirror({
            "id": cid, "created_at": started, "updated_at": finished,
            "username": rec["username"], "source": rec["source"],
            "display_name": rec["display_name"], "message_count": 0, "total_tokens": 0,
        }, stored=False)
    conv = mirror.row
    # Labels fill gaps only: a later header must not undo a rename made through the API.
    for label in _LABELS:
        if conv[label] is None:
            conv[label] = rec[label]

    incoming: list[dict[str, Any]] = rec["request_messages"]
    common = 0
    for stored, new in zip(mirror.messages, incoming, strict=False):
        if not _same(stored, new):
            break
        common += 1
    added = 0
    for msg in incoming[common:]:
        out.append((cid, len(mirror.messages), rid, started, msg["role"], msg["content"],
                    msg["name"], msg["tool_call_id"], msg["tool_calls"], msg["image_refs"],
                    None, None, None, None, None))
        mirror.messages.append(_Stored(msg["role"], msg["content"], msg["tool_call_id"]))
        added += 1
    answer = rec["response_message"]
    if answer is not None:
        role = answer["role"] or "assistant"
        tokens = rec["completion_tokens"]
        out.append((cid, len(mirror.messages), rid, finished, role, answer["content"],
                    answer["name"], answer["tool_call_id"], answer["tool_calls"],
                    answer["image_refs"], rec["model_id"], rec["provider_id"], tokens,
                    rec["prompt_tokens"], tokens))
        mirror.messages.append(_Stored(role, answer["content"], answer["tool_call_id"]))
        added += 1
    conv["message_count"] = len(mirror.messages)
    conv["total_tokens"] += rec["prompt_tokens"] + rec["completion_tokens"]
    if finished > conv["updated_at"]:
        conv["updated_at"] = finished
    return added


_REQUEST_FIELDS = tuple(
    name for name in RequestRecord.model_fields if name not in ("id", "started_at")
)


_REQUEST_COLUMNS = ("started_at", *_REQUEST_FIELDS)
_request_values = operator.itemgetter(*_REQUEST_FIELDS)


def _request_row(rec: Record) -> tuple[Any, ...]:
    try:
        values = _request_values(rec)
    except KeyError:  # a record spilled to a file by an older lai lacks newer columns
        values = tuple(rec.get(name) for name in _REQUEST_FIELDS)
    return (rec["started_at"], *values)


def write_batch(session: Session, records: Iterable[Record]) -> BatchResult:
    """Add ``records`` to ``session`` (the caller commits): one ``requests`` row each, and
    for successful requests with a conversation id, the conversation's new messages.

    Rows go in as plain inserts per table (conversations first, for the foreign key;
    ``lai.store.bulk``), built as lists of values in one pass, not one ORM object or
    dict each: at hundreds of requests a second the per-row work, done in a thread,
    held the GIL the event loop needs.

    Raises what the database raises; nothing is committed then.
    """
    batch = list(records)
    connection = session.connection()
    plan_each_time(connection)
    already: set[str] = set()
    for chunk in _chunks([r["request_id"] for r in batch]):
        already.update(present(connection, _REQUESTS, "request_id", chunk))
    todo: list[Record] = []
    seen: set[str] = set()
    for rec in batch:
        rid = rec["request_id"]
        if rid in already or rid in seen:
            continue
        seen.add(rid)
        todo.append(rec)
    mirrored = [r for r in todo if r["status"] == "success" and r["conversation_id"]]
    mirrors = _load_mirrors(connection,
                            list(dict.fromkeys(r["conversation_id"] for r in mirrored)))
    request_rows = [_request_row(rec) for rec in todo]
    message_rows: list[tuple[Any, ...]] = []
    for rec in mirrored:
        _mirror(mirrors, rec, message_rows)
    new_conversations = [_conversation_values(m.row) for m in mirrors.values() if not m.stored]
    insert_rows(connection, _CONVERSATIONS, _CONVERSATION_COLUMNS, new_conversations)
    _update_stored(connection, mirrors.values())
    insert_rows(connection, _REQUESTS, _REQUEST_COLUMNS, request_rows)
    insert_rows(connection, _MESSAGES, _MESSAGE_COLUMNS, message_rows)
    return BatchResult(requests=len(todo), messages=len(message_rows),
                       skipped=len(batch) - len(todo))
