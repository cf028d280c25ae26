"""API key rows and the values made of them: ``ApiKey`` rows to
:class:`~lai.store.keyvalues.KeyRecord` (with the prefixes of the keys each replaced and
was replaced by), a row's limits, a new key's row, and the checks the fields written
into a row pass. Used by the repository, :mod:`lai.store.keys`, and by
:mod:`lai.store.keylookup`; nothing here opens a session.

Errors: ``ValueError`` from the checks (an invalid limit, spill deadline, scope or model
list), which the CLI turns into exit 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from lai.store.keyquota import PERIODS, KeyQuota, quota_from_row
from lai.store.keyvalues import SCOPES, KeyRecord, hash_key, key_prefix
from lai.store.models import ApiKey


def now_or(now: datetime | None) -> datetime:
    """``now``, or the current UTC time when it is None."""
    return datetime.now(UTC) if now is None else now


def to_records(session: Any, rows: Sequence[ApiKey]) -> list[KeyRecord]:
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
                quota=row_quota(r),
                spill_after=r.spill_after,
            )
        )
    return out


def row_quota(row: ApiKey) -> KeyQuota:
    """The limits stored in ``row``."""
    return quota_from_row(row.max_concurrent, row.max_queued, row.rpm, row.tpm, row.budgets)


def apply_quota(row: ApiKey, quota: KeyQuota) -> None:
    """Write ``quota`` into ``row``'s limit columns (no budget: NULL)."""
    row.max_concurrent = quota.max_concurrent
    row.max_queued = quota.max_queued
    row.rpm = quota.rpm
    row.tpm = quota.tpm
    row.budgets = dict(quota.budgets) or None


def check_quota(quota: KeyQuota) -> None:
    """Raises ValueError for a limit below its least value or a budget not above 0."""
    for name in ("max_concurrent", "rpm", "tpm"):
        value = getattr(quota, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, not {value}")
    if quota.max_queued is not None and quota.max_queued < 0:
        raise ValueError(f"max_queued must be >= 0, not {quota.max_queued}")
    for period, usd in quota.budgets:
        if period not in PERIODS or not usd > 0:
            raise ValueError(f"a budget must be more than 0 USD per {', '.join(PERIODS)}")


def check_spill(spill_after: float | None) -> None:
    """Raises ValueError for a negative spill deadline."""
    if spill_after is not None and not spill_after >= 0:
        raise ValueError(f"--spill-after must be 0s or more, not {spill_after!r}")


def valid_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes lower-cased, each once. Raises ValueError for an unknown one."""
    out: list[str] = []
    for scope in scopes:
        scope = scope.strip().lower()
        if scope not in SCOPES:
            known = ", ".join(sorted(SCOPES))
            raise ValueError(f"unknown scope {scope!r}: known scopes are {known}")
        if scope not in out:
            out.append(scope)
    return tuple(out)


def valid_models(models: Iterable[str] | None) -> list[str] | None:
    """The model ids stripped, each once (None: every model). Raises ValueError for an
    empty list."""
    if models is None:
        return None
    out = [m.strip() for m in models if m.strip()]
    if not out:
        raise ValueError("--models needs at least one model id")
    return list(dict.fromkeys(out))


def new_row(
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
    """A row for the new key ``raw`` (only its hash and prefix are kept)."""
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
