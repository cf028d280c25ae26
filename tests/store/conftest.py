"""Store fixtures: every ``store`` test runs on a SQLite file and on PostgreSQL.

PostgreSQL: each test module gets its own database ``lai_t_<random>`` (created through
``LAI_TEST_POSTGRES_URL``, default the ``test`` database on 127.0.0.1:5432, with
autocommit) and drops it at the end, so pytest-xdist workers never share one. Tests in a
module share that database and start from empty tables. Without a server the PostgreSQL
cases are skipped with the reason shown on a developer's machine, and fail under CI
(``CI`` set), where `.ci/run` starts one: CI must prove both backends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from lai.store.db import Store, normalize_url, open_store
from tests.store.helpers import PG_URL

BACKENDS = ["sqlite", "postgresql"]


def _admin_engine() -> sa.Engine:
    return sa.create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")


def create_pg_database() -> str:
    """Create an empty database; returns its URL. Skips the test without a server."""
    name = "lai_t_" + secrets.token_hex(6)
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return make_url(normalize_url(PG_URL)).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """The URL of this module's PostgreSQL database, migrated to head."""
    url = create_pg_database()
    store = open_store(url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    yield url
    drop_pg_database(url)


def _empty_tables(store: Store) -> None:
    with store.write_session() as session:
        session.execute(
            sa.text("TRUNCATE messages, conversations, requests, api_keys, responses "
                    "RESTART IDENTITY CASCADE")
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A migrated database for this test, with empty tables."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'lai.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def store(store_url: str, backend: str) -> Iterator[Store]:
    """A migrated, empty store on the parametrized backend."""
    s = open_store(store_url, sqlite_busy_timeout_ms=200)
    s.upgrade()
    if backend == "postgresql":
        _empty_tables(s)
    yield s
    s.dispose()


@pytest.fixture
def empty_url(backend: str, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database lai never touched (PostgreSQL: a fresh one for this test)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def make_store() -> Iterator[Callable[..., Store]]:
    """Open more stores (another process's view of the same database); disposed after."""
    opened: list[Store] = []

    def make(url: str, **kwargs: object) -> Store:
        s = open_store(url, **kwargs)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.dispose()
