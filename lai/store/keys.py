"""The API key repository: issuing, listing, rotating, revoking, updating and deleting
keys.

The values it speaks in (key material, :class:`~lai.store.keyvalues.KeyInfo`,
:class:`~lai.store.keyvalues.KeyRecord`, :class:`~lai.store.keyvalues.IssuedKey`, and the
rules a key is judged by) are in :mod:`lai.store.keyvalues`. The database keeps only a
key's hash and prefix; the full key is shown once, by whoever called :func:`create_key`
or :func:`rotate_key`.

Names identify a client ("laptop", "agent-ci"). A name is given to one key at creation;
rotation gives a new key the same name and keeps the old one working until its
``grace_until``. So a name stands for the *current* key plus predecessors that are still
in their grace period or dead. Operations take a name or a prefix (see
:func:`find_keys`): by name, ``revoke`` and ``delete`` act on every key of that name and
``enable`` and ``rotate`` on the current one; a prefix must match exactly one key.

Repository functions are blocking and open one session each; async callers use
``asyncio.to_thread``. Rows become records and new rows are checked in
:mod:`lai.store.keyrows`. Looking up the keys clients send is
:mod:`lai.store.keylookup`, which the proxy uses through
:class:`lai.store.keyservice.KeyService`.

Errors: :class:`KeyNotFound` (404), :class:`AmbiguousKey` and :class:`KeyConflict`
(400, lai errors the CLI turns into exit 1), ``ValueError`` for an invalid name, scope or
priority (the CLI's exit 2). No message ever contains more of a key than its prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, select

from lai.errors import InvalidRequest, NotFound
from lai.store.db import Store
from lai.store.keyquota import KeyQuota
from lai.store.keyrows import (
    apply_quota,
    check_quota,
    check_spill,
    new_row,
    now_or,
    row_quota,
    to_records,
    valid_models,
    valid_scopes,
)
from lai.store.keyvalues import (
    KEY_PREFIX,
    LOCAL_ONLY,
    PREFIX_LENGTH,
    IssuedKey,
    KeyRecord,
    default_priority,
    generate_key,
    hash_key,
    is_key_format,
    utc_text,
    validate_name,
)
from lai.store.models import ApiKey

log = logging.getLogger("lai.keys")


class KeyNotFound(NotFound):
    """No key has that name or prefix."""

    code = "key_not_found"


class AmbiguousKey(InvalidRequest):
    """A prefix that matches several keys; ``matches`` lists them."""

    code = "ambiguous_key"

    def __init__(self, message: str, matches: Sequence[KeyRecord]) -> None:
        super().__init__(message)
        self.matches = list(matches)


class KeyConflict(InvalidRequest):
    """The operation does not fit the key's state (name taken, rotating a revoked key...)."""

    code = "key_conflict"


def create_key(
    store: Store,
    name: str,
    *,
    expires_in: timedelta | None = None,
    scopes: Iterable[str] = (),
    priority: int | None = None,
    models: Iterable[str] | None = None,
    quota: KeyQuota | None = None,
    spill_after: float | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    """Issue a key named ``name``; the returned ``raw_key`` is the only copy of it.

    ``priority`` defaults to 0 for names starting ``agent-`` and 1 otherwise; ``models``
    None allows every model; ``expires_in`` None never expires; ``quota`` its limits;
    ``spill_after`` its own ``server.spill_after`` (seconds).
    Raises ValueError (bad name, scope, priority, model list, limit or a non-positive
    ``expires_in``) and KeyConflict when a key of that name exists already.
    """
    validate_name(name)
    quota = quota or KeyQuota()
    check_quota(quota)
    check_spill(spill_after)
    clean_scopes = valid_scopes(scopes)
    if priority is None:
        priority = default_priority(name)
    if priority not in (0, 1):
        raise ValueError(f"invalid priority {priority}: use 0 (first in the queue) or 1")
    clean_models = valid_models(models)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("the expiry must be longer than 0 seconds")
    now = now_or(now)
    expires_at = None if expires_in is None else now + expires_in
    raw = generate_key()
    with store.write_session() as session:
        existing = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
        if existing is not None:
            raise KeyConflict(
                f"a key named {name!r} exists already ({existing.key_prefix}); rotate it "
                f"with `lai keys rotate {name}`, or delete it first"
            )
        row = new_row(raw, name=name, now=now, expires_at=expires_at, scopes=clean_scopes,
                      priority=priority, models=clean_models)
        apply_quota(row, quota)
        row.spill_after = spill_after
        session.add(row)
        session.flush()
        (record,) = to_records(session, [row])
    log.info("created API key %r (%s)", name, record.prefix)
    return IssuedKey(raw, record)


def list_keys(store: Store) -> list[KeyRecord]:
    """Every key, by name, then oldest first (a rotated key before its replacement)."""
    with store.session() as session:
        rows = session.exec(
            select(ApiKey).order_by(col(ApiKey.name), col(ApiKey.created_at), col(ApiKey.id))
        ).all()
        return to_records(session, rows)


def _match(session: Any, name_or_prefix: str) -> tuple[Literal["name", "prefix"], list[ApiKey]]:
    text = name_or_prefix.strip()
    if is_key_format(text):  # a whole key pasted in: the exact one
        rows = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(text))).all()
        return "prefix", list(rows)
    if text.startswith(KEY_PREFIX):
        # Only the first 8 characters are stored; more typed characters cannot narrow it.
        wanted = text[:PREFIX_LENGTH]
        rows = session.exec(
            select(ApiKey)
            .where(col(ApiKey.key_prefix).startswith(wanted, autoescape=True))
            .order_by(col(ApiKey.name), col(ApiKey.id))
        ).all()
        return "prefix", list(rows)
    rows = session.exec(select(ApiKey).where(ApiKey.name == text).order_by(col(ApiKey.id))).all()
    return "name", list(rows)


def _describe(records: Sequence[KeyRecord], now: datetime) -> str:
    return ", ".join(f"{r.prefix} ({r.name}, {r.status_text(now)})" for r in records)


def _select(
    session: Any, name_or_prefix: str, now: datetime
) -> tuple[Literal["name", "prefix"], list[ApiKey]]:
    """The keys ``name_or_prefix`` designates: all keys of a name, or the one key of a
    prefix. Raises KeyNotFound and AmbiguousKey."""
    kind, rows = _match(session, name_or_prefix)
    if not rows:
        raise KeyNotFound(f"no key has the name or prefix {name_or_prefix.strip()!r}")
    if kind == "prefix" and len(rows) > 1:
        records = to_records(session, rows)
        raise AmbiguousKey(
            f"{name_or_prefix.strip()!r} matches {len(rows)} keys: {_describe(records, now)}; "
            "give the name or a longer prefix",
            records,
        )
    return kind, rows


def find_keys(store: Store, name_or_prefix: str, *, now: datetime | None = None) -> list[KeyRecord]:
    """The keys ``name_or_prefix`` designates.

    A name gives every key of that name (the current one and those it replaced); text
    starting with ``lai_`` is a prefix and must match exactly one key (a whole key is
    matched by its hash). Raises KeyNotFound and AmbiguousKey.
    """
    with store.session() as session:
        _, rows = _select(session, name_or_prefix, now_or(now))
        return to_records(session, rows)


def _select_one(session: Any, name_or_prefix: str, now: datetime) -> ApiKey:
    """The one key ``name_or_prefix`` designates: a prefix's key, or the current key of a
    name. Raises KeyNotFound, AmbiguousKey and KeyConflict (every key of the name was
    rotated out)."""
    kind, rows = _select(session, name_or_prefix, now)
    if kind == "prefix":
        return rows[0]
    current = [r for r in rows if r.grace_until is None]
    if not current:
        raise KeyConflict(
            f"every key named {rows[0].name!r} has been rotated out; create a new one or "
            "give a prefix"
        )
    return current[-1]


def revoke_keys(
    store: Store, name_or_prefix: str, *, now: datetime | None = None
) -> list[KeyRecord]:
    """Disable the designated keys (by name: every key of it, in grace ones too).

    Returns them as they are now. Revoking a revoked key changes nothing.
    Raises KeyNotFound and AmbiguousKey.
    """
    now = now_or(now)
    with store.write_session() as session:
        _, rows = _select(session, name_or_prefix, now)
        for row in rows:
            if row.enabled:
                row.enabled = False
                row.revoked_at = now
            session.add(row)
        session.flush()
        records = to_records(session, rows)
    for r in records:
        log.info("revoked API key %r (%s)", r.name, r.prefix)
    return records


def enable_key(store: Store, name_or_prefix: str, *, now: datetime | None = None) -> KeyRecord:
    """Enable a revoked key again (by name: the current key of that name).

    Expiry and a rotation's grace period still apply. Raises KeyNotFound, AmbiguousKey
    and KeyConflict (every key of the name was rotated out).
    """
    now = now_or(now)
    with store.write_session() as session:
        row = _select_one(session, name_or_prefix, now)
        row.enabled = True
        row.revoked_at = None
        session.add(row)
        session.flush()
        (record,) = to_records(session, [row])
    log.info("enabled API key %r (%s)", record.name, record.prefix)
    return record


def update_key(
    store: Store,
    name_or_prefix: str,
    *,
    limits: dict[str, int | None] | None = None,
    budgets: dict[str, float | None] | None = None,
    clear_budgets: bool = False,
    spill_after: float | None | Literal["keep"] = "keep",
    local_only: bool | None = None,
    now: datetime | None = None,
) -> list[KeyRecord]:
    """Change the limits of the designated keys (by name: every key of it, so a key in
    its grace period keeps the same limits as its successor); returns them as they are
    now. ``limits`` sets ``max_concurrent``, ``max_queued``, ``rpm`` or ``tpm`` (None
    removes one); ``budgets`` sets a period's USD (None removes it), after
    ``clear_budgets`` removed them all. Keys left out keep their values.
    ``spill_after`` sets the key's own spill deadline in seconds (None: the server's);
    ``local_only`` adds (True) or removes (False) the ``local-only`` scope.

    Raises KeyNotFound, AmbiguousKey and ValueError (an unknown or invalid limit).
    """
    limits = dict(limits or {})
    unknown = set(limits) - {"max_concurrent", "max_queued", "rpm", "tpm"}
    if unknown:
        raise ValueError(f"unknown key limit(s): {', '.join(sorted(unknown))}")
    if spill_after != "keep":
        check_spill(spill_after)
    now = now_or(now)
    with store.write_session() as session:
        _, rows = _select(session, name_or_prefix, now)
        for row in rows:
            quota = row_quota(row)
            spend = {} if clear_budgets else dict(quota.budgets)
            for period, usd in (budgets or {}).items():
                if usd is None:
                    spend.pop(period, None)
                else:
                    spend[period] = usd
            new = KeyQuota(
                limits.get("max_concurrent", quota.max_concurrent),
                limits.get("max_queued", quota.max_queued),
                limits.get("rpm", quota.rpm),
                limits.get("tpm", quota.tpm),
            ).with_budgets(spend)
            check_quota(new)
            apply_quota(row, new)
            if spill_after != "keep":
                row.spill_after = spill_after
            if local_only is not None:
                scopes = [s for s in (row.scopes or ()) if s != LOCAL_ONLY]
                row.scopes = [*scopes, LOCAL_ONLY] if local_only else scopes
            session.add(row)
        session.flush()
        records = to_records(session, rows)
    for r in records:
        log.info("updated API key %r (%s): limits %s", r.name, r.prefix, r.quota.describe())
    return records


def delete_keys(
    store: Store, name_or_prefix: str, *, now: datetime | None = None
) -> list[KeyRecord]:
    """Delete the designated keys for good (by name: every key of it); returns them as
    they were. A successor of a deleted key keeps working (its ``rotated_from`` is
    cleared). Raises KeyNotFound and AmbiguousKey."""
    now = now_or(now)
    with store.write_session() as session:
        _, rows = _select(session, name_or_prefix, now)
        records = to_records(session, rows)
        ids = [r.id for r in records]
        # Explicit, rather than relying on ON DELETE SET NULL: SQLite enforces it only
        # with the foreign_keys pragma on.
        session.execute(
            sa.update(ApiKey).where(col(ApiKey.rotated_from).in_(ids)).values(rotated_from=None)
        )
        session.execute(sa.delete(ApiKey).where(col(ApiKey.id).in_(ids)))
    for r in records:
        log.info("deleted API key %r (%s)", r.name, r.prefix)
    return records


def rotate_key(
    store: Store,
    name_or_prefix: str,
    *,
    grace: timedelta,
    now: datetime | None = None,
) -> IssuedKey:
    """Issue a new key under the same name; the old one works until ``now + grace``.

    The new key keeps the old one's scopes, priority, model list and limits, and its
    lifetime:
    a key that expired 30 days after creation expires 30 days after the rotation.
    The returned ``raw_key`` is the only copy of the new key; ``replaced`` is the old one.
    Raises KeyNotFound, AmbiguousKey, KeyConflict (the key is revoked, or was rotated
    already) and ValueError for a negative grace.
    """
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    now = now_or(now)
    raw = generate_key()
    with store.write_session() as session:
        old = _select_one(session, name_or_prefix, now)
        if old.grace_until is not None:
            raise KeyConflict(
                f"key {old.key_prefix} ({old.name}) was rotated already; rotate its "
                f"replacement, e.g. `lai keys rotate {old.name}`"
            )
        if not old.enabled:
            raise KeyConflict(
                f"key {old.key_prefix} ({old.name}) is revoked; enable it first, or delete "
                "it and create a new one"
            )
        expires_at = None
        if old.expires_at is not None:
            expires_at = now + (old.expires_at - old.created_at)
        new = new_row(raw, name=old.name, now=now, expires_at=expires_at,
                      scopes=tuple(old.scopes or ()), priority=old.priority,
                      models=None if old.models is None else list(old.models),
                      rotated_from=old.id)
        apply_quota(new, row_quota(old))
        new.spill_after = old.spill_after
        old.grace_until = now + grace
        session.add(old)
        session.add(new)
        session.flush()
        new_record, old_record = to_records(session, [new, old])
    log.info("rotated API key %r: %s replaces %s (grace until %s)", new_record.name,
             new_record.prefix, old_record.prefix, utc_text(old_record.grace_until))
    return IssuedKey(raw, new_record, replaced=old_record)
