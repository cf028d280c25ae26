"""What several commands share: the configured store, opened for one command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from lai.config.loader import find_config_path, load_settings
from lai.config.models import Settings
from lai.errors import LaiError
from lai.store.db import Store, open_store


@contextmanager
def configured_store(
    args: argparse.Namespace, *, upgrade: bool = True
) -> Iterator[tuple[Settings, Store]]:
    """The settings of ``--config`` and their store, migrated to head unless told not to;
    disposed on exit.

    Warnings (odd providers and the like) are `lai config check`'s business, not this.
    Raises ConfigError for a missing or invalid config, and LaiError (one line naming the
    database, password hidden) when the database cannot be reached or migrated.
    """
    settings, _warnings = load_settings(find_config_path(args.config))
    store = open_store(settings.server.database_url)
    try:
        if upgrade:
            store.upgrade()
        yield settings, store
    except (SQLAlchemyError, CommandError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LaiError(f"{store.url.render_as_string(hide_password=True)}: {first}") from exc
    finally:
        store.dispose()
