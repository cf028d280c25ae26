"""``lai db upgrade``, ``lai db current`` and ``lai db downgrade REV``."""

from __future__ import annotations

import argparse
import sys

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from lai.config.loader import find_config_path, load_settings
from lai.errors import LaiError
from lai.store.db import Store, open_store


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai db <upgrade|current|downgrade>`` and return the exit code.

    Prints one line saying where the database stands. Exit 2 for an unknown revision.

    Raises:
        ConfigError: the config is missing or invalid (``lai.cli`` exits 2).
        LaiError: the database cannot be reached or a migration fails (exit 1).
    """
    # Warnings (odd providers and the like) are `lai config check`'s business, not this.
    settings, _warnings = load_settings(find_config_path(args.config))
    store = open_store(settings.server.database_url)
    where = store.url.render_as_string(hide_password=True)
    try:
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
    except CommandError as exc:
        print(f"lai: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LaiError(f"{where}: {first}") from exc
    finally:
        store.dispose()
    return 0


def _print_current(store: Store, where: str) -> None:
    current, head = store.current(), store.head()
    if current is None:
        print(f"{where}: empty (no lai tables); run `lai db upgrade`")
    elif current == head:
        print(f"{where}: {current} (head)")
    else:
        print(f"{where}: {current} (head is {head}; run `lai db upgrade`)")
