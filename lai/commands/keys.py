"""``lai keys create | update | list | revoke | enable | delete | rotate``.

Every action migrates the store to head first, so ``lai keys create`` works on a
machine where no proxy ever ran. A new key is printed alone on its own line on stdout
(scripts can capture it); everything else people read goes to stderr or is the table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import orjson

from lai.commands.common import configured_store
from lai.config.models import Settings
from lai.durations import parse_duration
from lai.store import keys as repo
from lai.store.db import Store
from lai.store.keyquota import NONE_WORDS, KeyQuota, parse_budget, parse_limit
from lai.store.keyservice import CACHE_TTL
from lai.store.keyusage import LimitUse, keys_usage
from lai.store.keyvalues import LOCAL_ONLY, KeyRecord

_NOT_SHOWN_AGAIN = "Copy it now: it will not be shown again."


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai keys <action>`` and return the exit code.

    0 done; 2 usage (a bad duration, name, scope or priority: one line on stderr).
    Raises ConfigError (``lai.cli`` exits 2) and LaiError: no such key, an ambiguous
    prefix (the message lists the matches), a state conflict, an unreachable database
    (``lai.cli`` prints the one-line message and exits 1).
    """
    with configured_store(args) as (settings, store):
        try:
            return _dispatch(args, store, settings)
        except ValueError as exc:
            print(f"lai: {exc}", file=sys.stderr)
            return 2


def _dispatch(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    action = args.keys_command
    if action == "create":
        return _create(args, store, settings)
    if action == "list":
        return _list(store, as_json=args.json)
    if action == "rotate":
        return _rotate(args, store)
    if action == "update":
        return _update(args, store)
    if action == "revoke":
        for record in repo.revoke_keys(store, args.name_or_prefix):
            print(f"revoked {record.prefix} ({record.name})")
        print(f"A running proxy refuses it within {CACHE_TTL:g} s.", file=sys.stderr)
        return 0
    if action == "enable":
        record = repo.enable_key(store, args.name_or_prefix)
        status = record.status(_now())
        note = "" if status == "active" else f", but it is {record.status_text(_now())}"
        print(f"enabled {record.prefix} ({record.name}){note}")
        return 0
    if action == "delete":
        for record in repo.delete_keys(store, args.name_or_prefix):
            print(f"deleted {record.prefix} ({record.name})")
        return 0
    raise ValueError(f"unknown keys command {action!r}")


def _now() -> datetime:
    return datetime.now(UTC)


def _known_models(settings: Settings) -> set[str]:
    known = {p.id for p in settings.providers}
    for m in settings.models:
        known.update((m.id, f"{m.provider_id}/{m.id}"))
    return known


_LIMIT_FLAGS = {"max_concurrent": 1, "max_queued": 0, "rpm": 1, "tpm": 1}
"""The numeric limits and the least value each takes."""


def _limits(args: argparse.Namespace) -> dict[str, int | None]:
    """The numeric limit flags given (None: 'none'). Raises ValueError."""
    out: dict[str, int | None] = {}
    for name, minimum in _LIMIT_FLAGS.items():
        text = getattr(args, name)
        if text is not None:
            flag = "--" + name.replace("_", "-")
            out[name] = parse_limit(text, flag, minimum=minimum)
    return out


def _budgets(args: argparse.Namespace) -> tuple[bool, dict[str, float | None]]:
    """(clear every budget first, period -> USD or None) from the --budget flags."""
    clear = False
    out: dict[str, float | None] = {}
    for text in args.budget:
        if text.strip().lower() in NONE_WORDS:
            clear, out = True, {}
            continue
        period, usd = parse_budget(text)
        out[period] = usd
    return clear, out


def _spill_after(args: argparse.Namespace) -> float | None | Literal["keep"]:
    """--spill-after as seconds (None: 'none'), or "keep" when not given. Raises
    ValueError."""
    text = args.spill_after
    if text is None:
        return "keep"
    if text.strip().lower() in NONE_WORDS:
        return None
    return parse_duration(text).total_seconds()


def _create(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    expires = parse_duration(args.expires) if args.expires else None
    spill = _spill_after(args)
    scopes = [*args.scope, *([LOCAL_ONLY] if args.local_only else [])]
    models = args.models.split(",") if args.models is not None else None
    _, budgets = _budgets(args)
    limits = _limits(args)
    quota = KeyQuota(limits.get("max_concurrent"), limits.get("max_queued"),
                     limits.get("rpm"), limits.get("tpm")).with_budgets(
        {p: usd for p, usd in budgets.items() if usd is not None})
    issued = repo.create_key(
        store, args.name, expires_in=expires, scopes=scopes, priority=args.priority,
        models=models, quota=quota, spill_after=None if spill == "keep" else spill,
    )
    record = issued.record
    print(issued.raw_key, flush=True)
    unknown = sorted(set(record.models or ()) - _known_models(settings))
    if unknown:
        print(f"lai: warning: not in the config (yet): {', '.join(unknown)}", file=sys.stderr)
    print(
        f"Created key {record.prefix} named {record.name!r} ({_summary(record)}). "
        f"{_NOT_SHOWN_AGAIN}",
        file=sys.stderr,
    )
    return 0


def _update(args: argparse.Namespace, store: Store) -> int:
    limits = _limits(args)
    clear, budgets = _budgets(args)
    spill = _spill_after(args)
    if (not limits and not budgets and not clear and spill == "keep"
            and args.local_only is None):
        raise ValueError("nothing to update: give --max-concurrent, --max-queued, --rpm, "
                         "--tpm, --budget, --spill-after or --[no-]local-only")
    for record in repo.update_key(store, args.name_or_prefix, limits=limits, budgets=budgets,
                                  clear_budgets=clear, spill_after=spill,
                                  local_only=args.local_only):
        print(f"updated {record.prefix} ({record.name}): limits {record.quota.describe()}"
              f"{_routing(record)}")
    print(f"A running proxy applies it within {CACHE_TTL:g} s.", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace, store: Store) -> int:
    grace = parse_duration(args.grace)
    issued = repo.rotate_key(store, args.name_or_prefix, grace=grace)
    old, new = issued.replaced, issued.record
    assert old is not None
    print(issued.raw_key, flush=True)
    print(
        f"Rotated {new.name!r}: {new.prefix} replaces {old.prefix}, which keeps working "
        f"until {_time(old.grace_until)} UTC ({_summary(new)}). {_NOT_SHOWN_AGAIN}",
        file=sys.stderr,
    )
    return 0


def _routing(record: KeyRecord, *, with_scope: bool = True) -> str:
    """``, local-only, spill after 5s`` (what the key says about where it may go);
    without ``local-only`` when ``with_scope`` is false, for a line that lists the
    scopes already."""
    parts = [LOCAL_ONLY] if with_scope and LOCAL_ONLY in record.scopes else []
    if record.spill_after is not None:
        parts.append(f"spill after {record.spill_after:g}s")
    return "".join(f", {p}" for p in parts)


def _summary(record: KeyRecord) -> str:
    scopes = ", ".join(record.scopes) or "none"
    models = ", ".join(record.models) if record.models is not None else "all"
    expires = f"{_time(record.expires_at)} UTC" if record.expires_at else "never"
    return (f"priority {record.priority}, scopes: {scopes}, models: {models}, "
            f"limits: {record.quota.describe()}{_routing(record, with_scope=False)}, "
            f"expires {expires}")


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


_COLUMNS = ("PREFIX", "NAME", "SCOPES", "PRIORITY", "MODELS", "CREATED (UTC)",
            "LAST USED (UTC)", "EXPIRES (UTC)", "STATUS", "REPLACED BY", "LIMITS (USED)")


def limits_text(quota: KeyQuota, uses: Sequence[LimitUse]) -> str:
    """A key's limits with the use of each: ``max 2 in flight, 12/60 rpm,
    $1.20/$5.00/day``; ``-`` for none."""
    parts = []
    if quota.max_concurrent is not None:
        parts.append(f"max {quota.max_concurrent} in flight")
    if quota.max_queued is not None:
        parts.append(f"{quota.max_queued} queued")
    parts += [u.text() for u in uses]
    return ", ".join(parts) or "-"


def _row(record: KeyRecord, now: datetime, uses: Sequence[LimitUse] = ()) -> tuple[str, ...]:
    return (
        record.prefix,
        record.name,
        ",".join(record.scopes) or "-",
        str(record.priority),
        ",".join(record.models) if record.models is not None else "all",
        _time(record.created_at),
        _time(record.last_used_at) if record.last_used_at else "never",
        _time(record.expires_at) if record.expires_at else "never",
        record.status_text(now),
        record.replaced_by_prefix or "-",
        _with_spill(limits_text(record.quota, uses), record.spill_after),
    )


def _with_spill(limits: str, spill_after: float | None) -> str:
    if spill_after is None:
        return limits
    spill = f"spill after {spill_after:g}s"
    return spill if limits == "-" else f"{limits}, {spill}"


def format_table(records: Sequence[KeyRecord], now: datetime,
                 uses: Mapping[int, Sequence[LimitUse]] | None = None) -> str:
    """The ``lai keys list`` table: one aligned row per key, times in UTC; ``uses`` the
    use of each key's rpm, tpm and budgets, by key id."""
    uses = uses or {}
    rows = [_COLUMNS, *(_row(r, now, uses.get(r.id, ())) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join(lines)


def _list(store: Store, *, as_json: bool) -> int:
    records = repo.list_keys(store)
    now = _now()
    # Use is counted per name (rotated keys share it): shown on the current key.
    uses = keys_usage(store, records, now)
    if as_json:
        rows = [{**r.to_dict(now), "usage": [u.to_dict() for u in uses.get(r.id, ())]}
                for r in records]
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not records:
        print("no keys yet; create one with `lai keys create NAME`", file=sys.stderr)
        return 0
    print(format_table(records, now, uses))
    return 0
