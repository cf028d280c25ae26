"""API keys as values: the key material, and the views of a key with the rules it is
judged by. Nothing here touches the database.

A key is ``lai_`` followed by 32 hex characters from :mod:`secrets`. The database keeps
only its SHA-256 hash and its first 8 characters (``lai_5f4d``, the *prefix*).
:class:`KeyInfo` is a verified key as the proxy uses it (and when it stops working),
:class:`KeyRecord` a key as the CLI and the TUI show it (and its status),
:class:`IssuedKey` a key just made, :class:`KeyLookup` what the database says about a key
hash (and whether the key may be used now). The repository that reads and writes keys,
and speaks in these values, is :mod:`lai.store.keys` (lookups: :mod:`lai.store.keylookup`).

Errors: ``ValueError`` from :func:`validate_name`, and
:class:`~lai.errors.AuthenticationFailed` from :func:`require_format` and
:meth:`KeyLookup.check`. No message ever contains more of a key than its prefix.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from lai.errors import AuthenticationFailed
from lai.store.keyquota import KeyQuota

KEY_PREFIX = "lai_"
PREFIX_LENGTH = 8
"""Characters of a key kept in the clear: ``lai_`` and 4 hex digits."""
KEY_PATTERN = re.compile(r"^lai_[0-9a-f]{32}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}$")
LOCAL_ONLY = "local-only"
SCOPES = frozenset({"admin", LOCAL_ONLY})
"""Scopes a key may carry. ``admin``: the ``/admin/*`` endpoints over TCP;
``local-only``: no cloud provider ever serves it, whatever the config says."""
AGENT_PREFIX = "agent-"

KeyStatus = Literal["active", "revoked", "expired", "grace", "rotated"]


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


def utc_text(value: datetime | None) -> str:
    """A time as messages show it: ``2025-01-02 10:00 UTC``, or ``never`` for None."""
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A verified key as the proxy uses it: who, how urgent, what it may do. No secret.

    ``build_context()`` reads ``priority``, ``name``, ``prefix``, ``models`` and the
    queue caps of ``quota``.
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
    quota: KeyQuota = KeyQuota()
    """Its own caps: in flight, queued, rpm, tpm, budgets."""
    spill_after: float | None = None
    """Seconds of expected local wait after which its ``auto`` requests go to the cloud;
    None: ``server.spill_after``."""

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
                f"{utc_text(self.grace_until)}; use the key that replaced it."
            )
        if self.expires_at is not None and now >= self.expires_at:
            return f"API key {self.label()} expired at {utc_text(self.expires_at)}."
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
    quota: KeyQuota = KeyQuota()
    spill_after: float | None = None

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
            return f"grace until {utc_text(self.grace_until)}"
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
            "limits": self.quota.to_dict(),
            "spill_after": self.spill_after,
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: ``raw_key`` is the only copy of the secret there will ever be."""

    raw_key: str
    record: KeyRecord
    replaced: KeyRecord | None = None
    """For a rotation: the old key, now in its grace period."""


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
