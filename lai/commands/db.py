"""``lai db upgrade``, ``lai db current`` and ``lai db downgrade REV``."""

from __future__ import annotations

import argparse
import sys

from alembic.util import CommandError

from lai.commands.common import configured_store
from lai.store.db import Store


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai db <upgrade|current|downgrade>`` and return the exit code.

    Prints one line saying where the database stands. Exit 2 for an unknown revision.

    Raises:
        ConfigError: the config is missing or invalid (``lai.cli`` exits 2).
        LaiError: the database cannot be reached or a migration fails (exit 1).
    """
    with configured_store(args, upgrade=False) as (_settings, store):
        where = store.url.render_as_string(hide_password=True)
        try:
            return _carry_out(args, store, where)
        except CommandError as exc:  # an unknown revision: the user's mistake
            print(f"lai: {exc}", file=sys.stderr)
            return 2


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
