"""What the proxy asks of the key table on every request, through
:class:`lai.store.keyservice.KeyService` (which caches :func:`lookup_key` and batches
:func:`touch_last_used`): a key hash's row, a key checked without any cache, and
``last_used_at`` written for several keys at once. Issuing, rotating and revoking keys is
:mod:`lai.store.keys`.

Errors: :class:`~lai.errors.AuthenticationFailed` from :func:`verify_key`;
``sqlalchemy.exc.SQLAlchemyError`` when the database fails. No message ever contains
more of a key than its prefix.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select

from lai.store.db import Store
from lai.store.keyrows import now_or, row_quota
from lai.store.keyvalues import KeyInfo, KeyLookup, hash_key, require_format
from lai.store.models import ApiKey, UTCDateTime


def touch_last_used(store: Store, used: dict[int, datetime]) -> None:
    """Set ``last_used_at`` of several keys in one UPDATE (deleted keys are skipped).

    Raises ``sqlalchemy.exc.SQLAlchemyError`` when the database fails.
    """
    if not used:
        return
    when = sa.case(
        *[
            (col(ApiKey.id) == key_id, sa.bindparam(f"used_{i}", at, type_=UTCDateTime()))
            for i, (key_id, at) in enumerate(used.items())
        ],
        else_=col(ApiKey.last_used_at),
    )
    with store.write_session() as session:
        session.execute(
            sa.update(ApiKey).where(col(ApiKey.id).in_(list(used))).values(last_used_at=when)
        )




def lookup_key(store: Store, key_hash: str) -> KeyLookup:
    """The row of the key whose hash is ``key_hash``, as a KeyLookup (no clock involved).

    Raises ``sqlalchemy.exc.SQLAlchemyError`` when the database fails.
    """
    with store.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
    if row is None:
        return KeyLookup(None, None)
    assert row.id is not None
    info = KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.key_prefix,
        scopes=frozenset(row.scopes or ()),
        priority=row.priority,
        models=None if row.models is None else tuple(row.models),
        expires_at=row.expires_at,
        grace_until=row.grace_until,
        quota=row_quota(row),
        spill_after=row.spill_after,
    )
    if not row.enabled:
        return KeyLookup(info, f"API key {info.label()} has been revoked.")
    return KeyLookup(info, None)


def verify_key(store: Store, raw_key: str | None, *, now: datetime | None = None) -> KeyInfo:
    """Check a key against the database, without any cache.

    Raises AuthenticationFailed (401 ``invalid_api_key``) for a missing, malformed,
    unknown, revoked, expired or rotated-out key, with a message naming at most its
    prefix; ``sqlalchemy.exc.SQLAlchemyError`` when the database fails.
    """
    raw = require_format(raw_key)
    return lookup_key(store, hash_key(raw)).check(raw, now_or(now))
