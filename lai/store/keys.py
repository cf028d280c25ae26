"""API keys: issuing, listing, rotating and revoking them, and checking the ones clients send.

A key is ``lai_`` followed by 32 hex characters from :mod:`secrets`. The database keeps
only its SHA-256 hash and its first 8 characters (``lai_5f4d``, the *prefix*); the full
key is shown once, by whoever called :func:`create_key` or :func:`rotate_key`.

Names identify a client ("laptop", "agent-ci"). A name is given to one key at creation;
rotation gives a new key the same name and keeps the old one working until its
``grace_until``. So a name stands for the *current* key plus predecessors that are still
in their grace period or dead. Operations take a name or a prefix (see
:func:`find_keys`): by name, ``revoke`` and ``delete`` act on every key of that name and
``enable`` and ``rotate`` on the current one; a prefix must match exactly one key.

Repository functions are blocking and open one session each; async callers use
``asyncio.to_thread``. The proxy verifies keys through
:class:`lai.store.keyservice.KeyService`, which caches :func:`lookup_key` and batches
:func:`touch_last_used`.

Errors: :class:`KeyNotFound` (404), :class:`AmbiguousKey` and :class:`KeyConflict`
(400, lai errors the CLI turns into exit 1), ``ValueError`` for an invalid name, scope or
priority (the CLI's exit 2), and :class:`~lai.errors.AuthenticationFailed` from
verification. No message ever contains more of a key than its prefix.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, select

from lai.errors import AuthenticationFailed, InvalidRequest, NotFound
from lai.store.db import Store
from lai.store.models import ApiKey, UTCDateTime

log = logging.getLogger("lai.keys")

KEY_PREFIX = "lai_"
PREFIX_LENGTH = 8
"""Characters of a key kept in the clear: ``lai_`` and 4 hex digits."""
KEY_PATTERN = re.compile(r"^lai_[0-9a-f]{32}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}$")
SCOPES = frozenset({"admin"})
"""Scopes a key may carry. ``admin``: the ``/admin/*`` endpoints over TCP."""
AGENT_PREFIX = "agent-"

KeyStatus = Literal["active", "revoked", "expired", "grace", "rotated"]


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


# -- key material --------------------------------------------------------------------------


def generate_key() -> str:
    """A new key: ``lai_`` and 32 hex characters (128 bits) from :mod:`secrets`."""
    return KEY_PREFIX + secrets.token_hex(16)


def hash_key(raw_key: str) -> str:
    """The SHA-256 hex digest stored for ``raw_key``."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_prefix(raw_key: str) -> str:
    """The part of a key that may be stored, shown and logged."""
    return raw_key[:PREFIX_LENGTH]


def is_key_format(text: str) -> bool:
    """True for text shaped like a lai key (says nothing about whether it was issued)."""
    return KEY_PATTERN.match(text) is not None


def default_priority(name: str) -> int:
    """Queue priority of a key created without ``--priority``: 0 for ``agent-*``, else 1."""
    return 0 if name.startswith(AGENT_PREFIX) else 1


def validate_name(name: str) -> str:
    """``name`` if it can name a key, else ValueError saying what is allowed.

    1-64 characters of letters, digits and ``. _ @ : + -``, starting with a letter or
    digit; never starting with ``lai_`` (that would read as a prefix).
    """
    if not NAME_PATTERN.match(name) or name.startswith(KEY_PREFIX):
        raise ValueError(
            f"invalid key name {name!r}: use 1-64 letters, digits or . _ @ : + -, "
            f"starting with a letter or digit and not with {KEY_PREFIX!r}"
        )
    return name


def _utc(value: datetime | None) -> str:
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A verified key as the proxy uses it: who, how urgent, what it may do. No secret.

    ``build_context()`` reads ``priority``, ``name``, ``prefix`` and ``models``.
    """

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    priority: int
    models: tuple[str, ...] | None
    """Model ids (or provider ids, or ``provider/model``) it may use; None for all."""
    expires_at: datetime | None
    grace_until: datetime | None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def label(self) -> str:
        """``'laptop' (lai_5f4d...)``: how messages and logs name the key."""
        return f"'{self.name}' ({self.prefix}...)"

    def refusal(self, now: datetime) -> str | None:
        """Why the key no longer works at ``now`` (expired, grace over), else None."""
        if self.grace_until is not None and now >= self.grace_until:
            return (
                f"API key {self.label()} was rotated and stopped working at "
                f"{_utc(self.grace_until)}; use the key that replaced it."
            )
        if self.expires_at is not None and now >= self.expires_at:
            return f"API key {self.label()} expired at {_utc(self.expires_at)}."
        return None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A row of ``api_keys`` as the CLI and the TUI show it, plus its rotation links."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    priority: int
    models: tuple[str, ...] | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    enabled: bool
    revoked_at: datetime | None
    grace_until: datetime | None
    rotated_from: int | None
    rotated_from_prefix: str | None
    replaced_by: int | None
    """The id of the key that rotation issued to replace this one."""
    replaced_by_prefix: str | None

    @property
    def is_current(self) -> bool:
        """Not rotated out: the key its name stands for."""
        return self.grace_until is None

    def status(self, now: datetime) -> KeyStatus:
        """``revoked``, ``rotated`` (grace over), ``expired``, ``grace`` or ``active``."""
        if not self.enabled:
            return "revoked"
        if self.grace_until is not None and now >= self.grace_until:
            return "rotated"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.grace_until is not None:
            return "grace"
        return "active"

    def status_text(self, now: datetime) -> str:
        """The status for people: ``grace until 2025-01-02 10:00 UTC`` for a key in grace."""
        status = self.status(now)
        if status == "grace":
            return f"grace until {_utc(self.grace_until)}"
        return status

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """JSON-ready fields (times ISO 8601 UTC), as ``lai keys list --json`` prints them."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.astimezone(UTC).isoformat()

        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "priority": self.priority,
            "models": None if self.models is None else list(self.models),
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "expires_at": iso(self.expires_at),
            "grace_until": iso(self.grace_until),
            "revoked_at": iso(self.revoked_at),
            "enabled": self.enabled,
            "status": self.status(now),
            "rotated_from": self.rotated_from_prefix,
            "replaced_by": self.replaced_by_prefix,
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: ``raw_key`` is the only copy of the secret there will ever be."""

    raw_key: str
    record: KeyRecord
    replaced: KeyRecord | None = None
    """For a rotation: the old key, now in its grace period."""


# -- repository ----------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def _records(session: Any, rows: Sequence[ApiKey]) -> list[KeyRecord]:
    """Rows to records, with the prefixes of the keys they replaced and were replaced by."""
    ids = [r.id for r in rows if r.id is not None]
    linked = {r.rotated_from for r in rows if r.rotated_from is not None}
    prefixes: dict[int, str] = {r.id: r.key_prefix for r in rows if r.id is not None}
    successors: dict[int, tuple[int, str]] = {}
    if ids or linked:
        related = session.exec(
            select(ApiKey).where(
                sa.or_(col(ApiKey.rotated_from).in_(ids), col(ApiKey.id).in_(linked))
            )
        ).all()
        for r in related:
            prefixes[r.id] = r.key_prefix
            if r.rotated_from is not None:
                successors[r.rotated_from] = (r.id, r.key_prefix)
    for r in rows:
        if r.rotated_from is not None and r.id is not None:
            successors[r.rotated_from] = (r.id, r.key_prefix)
    out = []
    for r in rows:
        assert r.id is not None
        succ = successors.get(r.id)
        out.append(
            KeyRecord(
                id=r.id,
                name=r.name,
                prefix=r.key_prefix,
                scopes=tuple(r.scopes or ()),
                priority=r.priority,
                models=None if r.models is None else tuple(r.models),
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                expires_at=r.expires_at,
                enabled=r.enabled,
                revoked_at=r.revoked_at,
                grace_until=r.grace_until,
                rotated_from=r.rotated_from,
                rotated_from_prefix=(
                    prefixes.get(r.rotated_from) if r.rotated_from is not None else None
                ),
                replaced_by=succ[0] if succ else None,
                replaced_by_prefix=succ[1] if succ else None,
            )
        )
    return out


def _clean_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for scope in scopes:
        scope = scope.strip().lower()
        if scope not in SCOPES:
            known = ", ".join(sorted(SCOPES))
            raise ValueError(f"unknown scope {scope!r}: known scopes are {known}")
        if scope not in out:
            out.append(scope)
    return tuple(out)


def _clean_models(models: Iterable[str] | None) -> list[str] | None:
    if models is None:
        return None
    out = [m.strip() for m in models if m.strip()]
    if not out:
        raise ValueError("--models needs at least one model id")
    return list(dict.fromkeys(out))


def _new_row(
    raw: str,
    *,
    name: str,
    now: datetime,
    expires_at: datetime | None,
    scopes: Sequence[str],
    priority: int,
    models: list[str] | None,
    rotated_from: int | None = None,
) -> ApiKey:
    return ApiKey(
        name=name,
        key_hash=hash_key(raw),
        key_prefix=key_prefix(raw),
        created_at=now,
        expires_at=expires_at,
        enabled=True,
        scopes=list(scopes),
        priority=priority,
        models=models,
        rotated_from=rotated_from,
    )


def create_key(
    store: Store,
    name: str,
    *,
    expires_in: timedelta | None = None,
    scopes: Iterable[str] = (),
    priority: int | None = None,
    models: Iterable[str] | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    """Issue a key named ``name``; the returned ``raw_key`` is the only copy of it.

    ``priority`` defaults to 0 for names starting ``agent-`` and 1 otherwise; ``models``
    None allows every model; ``expires_in`` None never expires.
    Raises ValueError (bad name, scope, priority, model list or a non-positive
    ``expires_in``) and KeyConflict when a key of that name exists already.
    """
    validate_name(name)
    clean_scopes = _clean_scopes(scopes)
    if priority is None:
        priority = default_priority(name)
    if priority not in (0, 1):
        raise ValueError(f"invalid priority {priority}: use 0 (first in the queue) or 1")
    clean_models = _clean_models(models)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("the expiry must be longer than 0 seconds")
    now = _now(now)
    expires_at = None if expires_in is None else now + expires_in
    raw = generate_key()
    with store.write_session() as session:
        existing = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
        if existing is not None:
            raise KeyConflict(
                f"a key named {name!r} exists already ({existing.key_prefix}); rotate it "
                f"with `lai keys rotate {name}`, or delete it first"
            )
        row = _new_row(raw, name=name, now=now, expires_at=expires_at, scopes=clean_scopes,
                       priority=priority, models=clean_models)
        session.add(row)
        session.flush()
        (record,) = _records(session, [row])
    log.info("created API key %r (%s)", name, record.prefix)
    return IssuedKey(raw, record)


def list_keys(store: Store) -> list[KeyRecord]:
    """Every key, by name, then oldest first (a rotated key before its replacement)."""
    with store.session() as session:
        rows = session.exec(
            select(ApiKey).order_by(col(ApiKey.name), col(ApiKey.created_at), col(ApiKey.id))
        ).all()
        return _records(session, rows)


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
        records = _records(session, rows)
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
        _, rows = _select(session, name_or_prefix, _now(now))
        return _records(session, rows)


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
    now = _now(now)
    with store.write_session() as session:
        _, rows = _select(session, name_or_prefix, now)
        for row in rows:
            if row.enabled:
                row.enabled = False
                row.revoked_at = now
            session.add(row)
        session.flush()
        records = _records(session, rows)
    for r in records:
        log.info("revoked API key %r (%s)", r.name, r.prefix)
    return records


def enable_key(store: Store, name_or_prefix: str, *, now: datetime | None = None) -> KeyRecord:
    """Enable a revoked key again (by name: the current key of that name).

    Expiry and a rotation's grace period still apply. Raises KeyNotFound, AmbiguousKey
    and KeyConflict (every key of the name was rotated out).
    """
    now = _now(now)
    with store.write_session() as session:
        row = _select_one(session, name_or_prefix, now)
        row.enabled = True
        row.revoked_at = None
        session.add(row)
        session.flush()
        (record,) = _records(session, [row])
    log.info("enabled API key %r (%s)", record.name, record.prefix)
    return record


def delete_keys(
    store: Store, name_or_prefix: str, *, now: datetime | None = None
) -> list[KeyRecord]:
    """Delete the designated keys for good (by name: every key of it); returns them as
    they were. A successor of a deleted key keeps working (its ``rotated_from`` is
    cleared). Raises KeyNotFound and AmbiguousKey."""
    now = _now(now)
    with store.write_session() as session:
        _, rows = _select(session, name_or_prefix, now)
        records = _records(session, rows)
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

    The new key keeps the old one's scopes, priority and model list, and its lifetime:
    a key that expired 30 days after creation expires 30 days after the rotation.
    The returned ``raw_key`` is the only copy of the new key; ``replaced`` is the old one.
    Raises KeyNotFound, AmbiguousKey, KeyConflict (the key is revoked, or was rotated
    already) and ValueError for a negative grace.
    """
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    now = _now(now)
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
        new = _new_row(raw, name=old.name, now=now, expires_at=expires_at,
                       scopes=tuple(old.scopes or ()), priority=old.priority,
                       models=None if old.models is None else list(old.models),
                       rotated_from=old.id)
        old.grace_until = now + grace
        session.add(old)
        session.add(new)
        session.flush()
        new_record, old_record = _records(session, [new, old])
    log.info("rotated API key %r: %s replaces %s (grace until %s)", new_record.name,
             new_record.prefix, old_record.prefix, _utc(old_record.grace_until))
    return IssuedKey(raw, new_record, replaced=old_record)


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


# -- verification ------------------------------------------------------------------------------


MISSING_KEY = "Missing API key: send it as 'Authorization: Bearer lai_...'."
MALFORMED_KEY = "Invalid API key: a lai key is 'lai_' followed by 32 hex characters."


def _unknown(raw_key: str) -> str:
    return f"Unknown API key {key_prefix(raw_key)}...: it was never issued here or was deleted."


def require_format(raw_key: str | None) -> str:
    """``raw_key`` if it is shaped like a lai key, so worth looking up. Raises
    AuthenticationFailed for a missing or malformed key."""
    if not raw_key:
        raise AuthenticationFailed(MISSING_KEY)
    if not is_key_format(raw_key):
        raise AuthenticationFailed(MALFORMED_KEY)
    return raw_key


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """What the database says about a key hash; kept as it is by KeyService's cache."""

    info: KeyInfo | None
    """None when no key has that hash."""
    refusal: str | None
    """Why a key that exists never works (revoked); None for a missing or usable key."""

    def check(self, raw_key: str, now: datetime) -> KeyInfo:
        """The key's info if it may be used at ``now``. Raises AuthenticationFailed for
        an unknown, revoked, expired or rotated-out key."""
        if self.info is None:
            raise AuthenticationFailed(_unknown(raw_key))
        if self.refusal is not None:
            raise AuthenticationFailed(self.refusal)
        refusal = self.info.refusal(now)
        if refusal is not None:
            raise AuthenticationFailed(refusal)
        return self.info


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
    return lookup_key(store, hash_key(raw)).check(raw, _now(now))
