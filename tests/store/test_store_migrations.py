"""Schema only through Alembic: upgrade, no drift from the models, downgrade, upgrade."""

from __future__ import annotations

import subprocess
import sys
import threading

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import lai.store.models  # noqa: F401  (the tables)
from lai.store.db import Store, open_store, script_head
from lai.store.fts import include_object

TABLES = {"conversations", "messages", "requests", "api_keys"}


def _tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names()) - {"alembic_version"}


def _diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True}
        )
        return list(compare_metadata(ctx, SQLModel.metadata))


def test_round_trip_on_an_empty_database(empty_url: str) -> None:
    store = open_store(empty_url)
    try:
        assert store.current() is None
        store.upgrade()
        assert store.current() == store.head()
        assert TABLES <= _tables(store)
        assert _diff(store) == []

        store.downgrade("base")
        assert store.current() is None
        assert not (_tables(store) & TABLES)
        assert not {t for t in _tables(store) if t.startswith("messages_fts")}

        store.upgrade()
        assert store.current() == store.head()
        assert _diff(store) == []
    finally:
        store.dispose()


def test_upgrade_twice_at_once_from_two_processes_views(empty_url: str) -> None:
    """The proxy and the TUI may start together: both migrate, neither fails."""
    stores = [open_store(empty_url), open_store(empty_url)]
    errors: list[BaseException] = []

    def run(s: Store) -> None:
        try:
            s.upgrade()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert stores[0].current() == stores[0].head()
    finally:
        for s in stores:
            s.dispose()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'lai.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()


def test_postgres_urls_mean_psycopg() -> None:
    store = open_store("postgresql://u@127.0.0.1/x")
    assert store.url.drivername == "postgresql+psycopg"
    assert open_store("postgres://u@h/x").url.drivername == "postgresql+psycopg"


def test_the_head_read_from_the_scripts_is_alembics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    assert script_head() is not None and script_head() == store.head()


def test_an_up_to_date_database_is_not_migrated_and_alembic_stays_unloaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A proxy migrates on every start; Alembic would stay in its memory for nothing.
    url = f"sqlite:///{tmp_path / 'lai.db'}"
    open_store(url).upgrade()
    code = (
        "import sys; from lai.store.db import open_store; s = open_store(sys.argv[1]); "
        "s.upgrade(); print(s._stamped(), 'alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [script_head(), "False"]
