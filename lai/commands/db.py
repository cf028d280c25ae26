"""``lai db upgrade|current|downgrade REV``: migrations; ``lai db size|vacuum``: room on
disk; ``lai db backup PATH``: a consistent copy of a live SQLite database."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import orjson
from alembic.util import CommandError

from lai.commands.common import configured_store
from lai.errors import InvalidRequest, LaiError
from lai.store import backup, space
from lai.store.db import Store


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai db <upgrade|current|downgrade|size|vacuum|backup>`` and return the
    exit code.

    Prints what was done. Exit 2 for an unknown revision, and for a backup that cannot be
    made as asked (PostgreSQL: use pg_dump; the file exists without --force).

    Raises:
        ConfigError: the config is missing or invalid (``lai.cli`` exits 2).
        LaiError: the database cannot be reached or a migration fails (exit 1).
    """
    with configured_store(args, upgrade=False) as (_settings, store):
        where = store.url.render_as_string(hide_password=True)
        try:
            return _carry_out(args, store, where)
        except (CommandError, InvalidRequest) as exc:  # the user's mistake
            print(f"lai: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 2
        except (FileNotFoundError, sqlite3.Error) as exc:  # a missing file, a locked one
            raise LaiError(f"{where}: {exc}") from exc


def _carry_out(args: argparse.Namespace, store: Store, where: str) -> int:
    if args.db_command == "upgrade":
        before = store.current()
        store.upgrade()
        after = store.current()
        if before == after:
            print(f"{where}: already at {after} (head)")
        else:
            print(f"{where}: upgraded {before or 'empty'} -> {after} (head)")
    elif args.db_command == "current":
        _print_current(store, where)
    elif args.db_command == "downgrade":
        store.downgrade(args.rev)
        print(f"{where}: downgraded to {store.current() or 'base (no lai tables)'}")
    elif args.db_command == "size":
        _print_size(store, where, as_json=args.json)
    elif args.db_command == "vacuum":
        _vacuum(store, where)
    elif args.db_command == "backup":
        dest = backup.resolve_destination(store, Path(args.path), force=args.force)
        done = backup.backup_sqlite(store, dest)
        print(f"{where}: backed up to {done.path} ({space.human_bytes(done.bytes)}, "
              f"{done.requests} requests, {done.conversations} conversations, "
              f"integrity ok, {done.seconds:.1f} s)")
    else:
        raise ValueError(f"unknown db command {args.db_command!r}")
    return 0


def _print_current(store: Store, where: str) -> None:
    current, head = store.current(), store.head()
    if current is None:
        print(f"{where}: empty (no lai tables); run `lai db upgrade`")
    elif current == head:
        print(f"{where}: {current} (head)")
    else:
        print(f"{where}: {current} (head is {head}; run `lai db upgrade`)")


def _print_size(store: Store, where: str, *, as_json: bool) -> None:
    size = space.database_size(store)
    counts = space.row_counts(store)
    if as_json:
        out = {"database": where, "bytes": size.total_bytes, "wal_bytes": size.wal_bytes,
               "free_bytes": size.free_bytes, "auto_vacuum": size.auto_vacuum, "rows": counts}
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    line = f"{where}: {space.human_bytes(size.total_bytes)}"
    if store.dialect == "sqlite":
        line += f" (WAL {space.human_bytes(size.wal_bytes)}"
        if size.free_bytes:
            line += f", {space.human_bytes(size.free_bytes)} free: `lai db vacuum` returns it"
        line += ")"
    print(line)
    if not counts:
        print("no lai tables; run `lai db upgrade`")
    width = max(len(t) for t in space.TABLES)
    for table, n in counts.items():
        print(f"  {table:<{width}}  {n:>12,}")


def _vacuum(store: Store, where: str) -> None:
    before = space.database_size(store).total_bytes
    space.vacuum(store)
    after = space.database_size(store).total_bytes
    print(f"{where}: vacuumed, {space.human_bytes(before)} -> {space.human_bytes(after)}")
    if store.dialect == "postgresql":
        print("PostgreSQL keeps freed room for new rows (autovacuum does the same); "
              "VACUUM FULL, which locks the tables, returns it to the disk")
