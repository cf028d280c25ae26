"""Turning finished requests into rows: the ``requests`` row and the conversation mirror.

``record_from_event`` flattens a ``RequestFinished`` into a plain, JSON-safe dict (the
recorder queues these, and can spill them to a file). ``write_batch`` writes a batch in
one transaction. It is idempotent: a record whose ``request_id`` is already stored is
skipped, so retrying a batch whose commit did happen (the connection broke just after)
duplicates nothing.

Mirroring: clients resend the whole history each turn. The stored messages are compared
with the request's by position (role and text; a system message matches on role alone,
because some clients put the time or working directory in it); the request's messages
past the common prefix are appended, then the assistant's answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    # Clients resend an answer they received with whitespace trimmed, or null as "".
    return (stored.content or "").strip() == (incoming["content"] or "").strip()


@dataclass(slots=True)
class _Stored:
    role: str
    content: str | None
    tool_call_id: str | None


@dataclass(slots=True)
class _Mirror:
    """A conversation as loaded in this transaction, kept current while the batch runs."""

    conversation: Conversation
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


def _load_mirror(session: Session, conversation_id: str) -> _Mirror | None:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return None
    rows = session.exec(
        select(Message.role, Message.content, Message.tool_call_id)
        .where(Message.conversation_id == conversation_id)
        .order_by(col(Message.position))
    ).all()
    return _Mirror(conv, [_Stored(r, c, t) for r, c, t in rows])


def _mirror(session: Session, mirrors: dict[str, _Mirror], rec: Record) -> int:
    """Append what ``rec`` adds to its conversation; returns the number of messages added."""
    cid: str = rec["conversation_id"]
    started = _epoch(rec["started_at"])
    finished = _epoch(rec["started_at"] + rec["duration_ms"] / 1000.0)
    mirror = mirrors.get(cid) or _load_mirror(session, cid)
    if mirror is None:
        conv = Conversation(
            id=cid,
            created_at=started,
            updated_at=finished,
            username=rec["username"],
            source=rec["source"],
            display_name=rec["display_name"],
        )
        session.add(conv)
        # Inserted now, so that it exists before its messages (foreign key): no
        # relationship() tells the unit of work the order.
        session.flush()
        mirror = _Mirror(conv)
    mirrors[cid] = mirror
    conv = mirror.conversation
    # Labels fill gaps only: a later header must not undo a rename made through the API.
    for label in ("username", "source", "display_name"):
        if getattr(conv, label) is None and rec[label] is not None:
            setattr(conv, label, rec[label])

    incoming: list[dict[str, Any]] = rec["request_messages"]
    common = 0
    for stored, new in zip(mirror.messages, incoming, strict=False):
        if not _same(stored, new):
            break
        common += 1
    new_rows: list[Message] = []
    for msg in incoming[common:]:
        new_rows.append(Message(conversation_id=cid, created_at=started, **msg))
    answer = rec["response_message"]
    if answer is not None:
        new_rows.append(
            Message(
                conversation_id=cid,
                created_at=finished,
                model=rec["model_id"],
                provider=rec["provider_id"],
                tokens=rec["completion_tokens"],
                prompt_tokens=rec["prompt_tokens"],
                completion_tokens=rec["completion_tokens"],
                **{**answer, "role": answer["role"] or "assistant"},
            )
        )
    for row in new_rows:
        row.position = len(mirror.messages)
        row.request_id = rec["request_id"]
        mirror.messages.append(_Stored(row.role, row.content, row.tool_call_id))
        session.add(row)
    conv.message_count = len(mirror.messages)
    conv.total_tokens += rec["prompt_tokens"] + rec["completion_tokens"]
    if finished > conv.updated_at:
        conv.updated_at = finished
    return len(new_rows)


_REQUEST_FIELDS = tuple(
    name for name in RequestRecord.model_fields if name not in ("id", "started_at")
)


def _existing_ids(session: Session, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # stay under bound-parameter limits
        chunk = ids[start : start + 500]
        found.update(
            session.exec(
                select(RequestRecord.request_id).where(col(RequestRecord.request_id).in_(chunk))
            ).all()
        )
    return found


def write_batch(session: Session, records: Iterable[Record]) -> BatchResult:
    """Add ``records`` to ``session`` (the caller commits): one ``requests`` row each, and
    for successful requests with a conversation id, the conversation's new messages.

    Raises what the database raises; nothing is committed then.
    """
    batch = list(records)
    already = _existing_ids(session, [r["request_id"] for r in batch])
    mirrors: dict[str, _Mirror] = {}
    added = messages = skipped = 0
    seen: set[str] = set()
    for rec in batch:
        rid = rec["request_id"]
        if rid in already or rid in seen:
            skipped += 1
            continue
        seen.add(rid)
        session.add(
            RequestRecord(
                started_at=_epoch(rec["started_at"]),
                **{name: rec[name] for name in _REQUEST_FIELDS},
            )
        )
        added += 1
        if rec["status"] == "success" and rec["conversation_id"]:
            messages += _mirror(session, mirrors, rec)
    session.flush()
    return BatchResult(requests=added, messages=messages, skipped=skipped)
