"""Alembic environment for lai: the schema is ``SQLModel.metadata`` from ``lai.store.models``.

lai builds the Alembic config in code (``lai.store.db``) and hands over an open
connection in ``config.attributes["connection"]``; someone running ``alembic`` by hand
gets the URL from ``LAI_DATABASE_URL`` or ``sqlalchemy.url`` in ``alembic.ini``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import lai.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from lai.store.fts import include_object

config = context.config
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name)  # only when run by hand: lai sets up its own logging
target_metadata = SQLModel.metadata


def _options(connection_dialect: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        "render_as_batch": connection_dialect == "sqlite",
        "include_object": include_object,
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    url = os.environ.get("LAI_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    dialect = (url or "sqlite").split(":", 1)[0].split("+", 1)[0]
    context.configure(url=url, literal_binds=True, **_options(dialect))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("LAI_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set LAI_DATABASE_URL or sqlalchemy.url in alembic.ini")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **_options(conn.dialect.name))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
