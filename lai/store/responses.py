"""Stored Responses API answers: keep one, get one, delete one.

Blocking functions, one session each; async callers use ``asyncio.to_thread``. A stored
response belongs to the key that made it: another key neither reads nor continues it
(it is not found), a key with scope ``admin`` may read any.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from lai.errors import ServiceUnavailable
from lai.store.db import Store
from lai.store.models import StoredResponse


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """A stored response, detached from the database."""

    id: str
    key_name: str | None
    conversation_id: str | None
    body: dict[str, Any]
    history: list[dict[str, Any]]


@contextmanager
def _database() -> Iterator[None]:
    """A database that is down or locked is a 503 for the client, not a 500."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise ServiceUnavailable(
            "The database is unavailable; stored responses cannot be read or written now.",
            code="store_unavailable",
        ) from exc


def save_response(
    store: Store, *, response_id: str, request_id: str | None, key_name: str | None,
    conversation_id: str | None, previous_response_id: str | None, body: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    """Keep a response (committed when this returns, so a continuation finds it).

    Raises ServiceUnavailable when the database is unavailable.
    """
    row = StoredResponse(
        id=response_id, request_id=request_id, key_name=key_name,
        conversation_id=conversation_id, previous_response_id=previous_response_id,
        status=str(body.get("status") or "completed")[:16], body=body, history=history,
    )
    with _database(), store.write_session() as session:
        session.add(row)


def _visible(row: StoredResponse, key_name: str | None, admin: bool) -> bool:
    return admin or row.key_name is None or row.key_name == key_name


def get_response(
    store: Store, response_id: str, *, key_name: str | None, admin: bool = False
) -> ResponseRow | None:
    """The stored response ``response_id`` as the caller may see it, None when there is
    none (or it belongs to another key). Raises ServiceUnavailable (database down)."""
    with _database(), store.session() as session:
        row = session.get(StoredResponse, response_id)
        if row is None or not _visible(row, key_name, admin):
            return None
        return ResponseRow(row.id, row.key_name, row.conversation_id, dict(row.body),
                           list(row.history))


def delete_response(
    store: Store, response_id: str, *, key_name: str | None, admin: bool = False
) -> bool:
    """Delete a stored response; False when there is none the caller may see. Raises
    ServiceUnavailable (database down)."""
    with _database(), store.write_session() as session:
        row = session.get(StoredResponse, response_id)
        if row is None or not _visible(row, key_name, admin):
            return False
        session.delete(row)
        return True
