"""Opening the database: engine, sessions, pragmas and migrations.

``open_store(url)`` builds a :class:`Store`; nothing connects until the first query.
SQLite gets WAL, a 5 s busy timeout and foreign keys on every connection, and real
transactions (the driver's own transaction handling is switched off, see
``_sqlite_events``), so migrations are transactional and a write unit of work takes the
write lock up front. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

import lai
from lai.store.private import create_private_file

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("lai.store")


@cache
def alembic_dir() -> Path:
    """The migration scripts: ``lai/_migrations`` in an installed wheel (pyproject.toml
    ships the top-level ``alembic/`` folder there), else ``alembic/`` beside the package in
    a source checkout or an editable install."""
    package = Path(lai.__file__).resolve().parent
    installed = package / "_migrations"
    return installed if installed.is_dir() else package.parent / "alembic"


SQLITE_BUSY_TIMEOUT_MS = 5000
_WRITE = "lai_write"
"""Execution option marking a connection whose transaction will write (SQLite:
BEGIN IMMEDIATE, so it waits for the write lock instead of failing halfway)."""
_PG_MIGRATION_LOCK = 0x6C6169  # "lai": serialises concurrent `upgrade`s on PostgreSQL

_REVISION_LINE = re.compile(
    r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:['\"]([^'\"]*)['\"]|None)", re.M
)


def _quiet_alembic() -> None:
    # Importing alembic.autogenerate (alembic.command does) logs one INFO line per
    # built-in plugin, seven on every start that migrates: nothing an operator can act on.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@cache
def script_head() -> str | None:
    """The newest revision of the migration scripts, read from their ``revision`` and
    ``down_revision`` lines without importing Alembic (~10 MiB a proxy would keep for
    nothing when its database is already up to date). None when they do not name one
    head; :meth:`Store.upgrade` then asks Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((alembic_dir() / "versions").glob("*.py")):
        found = dict((m.group(1), m.group(2)) for m in _REVISION_LINE.finditer(path.read_text()))
        if found.get("revision"):
            revisions.add(found["revision"])  # type: ignore[arg-type]
        if found.get("down_revision"):
            parents.add(found["down_revision"])  # type: ignore[arg-type]
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


ConversationDeletedHook = Callable[[str], object]
"""Called with a deleted conversation's id; what it returns is ignored."""


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL lai uses: ``postgresql://`` and ``postgres://`` mean psycopg 3.

    Raises ``sqlalchemy.exc.ArgumentError`` for a string that is not a database URL.
    """
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    database = engine.url.database or ""
    is_file = database not in ("", ":memory:") and not database.startswith("file:")

    @sa.event.listens_for(engine, "do_connect")
    def _make_file(*_args: Any) -> None:
        # On the first connection rather than in open_store, which must do no IO; a fresh
        # machine has no data/ folder yet and SQLite will not create it. The file is made
        # 0600 before SQLite opens it: SQLite gives its -wal and -shm the database's mode.
        if is_file:
            create_private_file(Path(database).expanduser())

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below start transactions rather than the driver, which
        # would skip BEGIN before DDL and SELECT (no transactional migrations, no
        # consistent reads).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            # Only takes effect in a file with no table yet (or at the next VACUUM): new
            # databases can hand rows deleted by retention back in steps (lai.store.space).
            cur.execute("PRAGMA auto_vacuum = INCREMENTAL")
            # WAL lets the proxy write while the TUI reads the same file.
            cur.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at each commit: a power cut can
            # lose the last transactions, never corrupt the file.
            cur.execute("PRAGMA synchronous = NORMAL")
            # Statement journals and sorts in memory: a multi-row INSERT opened (and
            # unlinked) a file in /var/tmp in every recorder transaction.
            cur.execute("PRAGMA temp_store = MEMORY")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes fails at once (no busy wait)
        # when another writer committed in between; IMMEDIATE takes the lock first.
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """A database: the SQLAlchemy engine, sessions, migrations and deletion hooks.

    Repository functions (``lai.store.conversations``, ``lai.store.requests``) take a
    Store and open one session per unit of work. Methods are blocking; async callers run
    them with ``asyncio.to_thread``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, class_=Session, expire_on_commit=False)
        self._write_engine = engine.execution_options(**{_WRITE: True})
        self._write_sessions = sessionmaker(
            self._write_engine, class_=Session, expire_on_commit=False
        )
        self.on_conversation_deleted: list[ConversationDeletedHook] = []
        """Called with the id after a conversation was deleted (e.g. to remove its image
        folder). A hook that raises is logged; the deletion stands."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def url(self) -> URL:
        return self.engine.url

    def private_paths(self) -> list[Path]:
        """The files of a SQLite database (the file, its -wal and -shm), which must be
        readable by their owner only; empty for a server database."""
        database = self.url.database or ""
        if self.dialect != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
            return []
        path = Path(database).expanduser()
        return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading; closed (and its transaction rolled back) on exit."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write_session(self, connection: sa.Connection | None = None) -> Iterator[Session]:
        """A session whose transaction commits on a clean exit and rolls back on error.

        On SQLite the transaction starts with BEGIN IMMEDIATE, waiting up to the busy
        timeout for other writers. With ``connection`` (from :meth:`write_connection`)
        it runs there instead of on a connection from the pool. Raises what the database
        raises (``sqlalchemy.exc.OperationalError`` when it is locked or unreachable).
        """
        sessions = self._write_sessions
        with (sessions() if connection is None else sessions(bind=connection)) as session, \
                session.begin():
            yield session

    def write_connection(self) -> sa.Connection:
        """A connection of its own for a long-lived writer (the recorder), whose
        transactions begin as :meth:`write_session`'s do; the caller closes it.

        Taking a pooled connection for each transaction handed the recorder whichever
        connection came next: on SQLite each has its own page cache, which a commit of
        another connection empties, so every batch read its index pages again.
        """
        return self._write_engine.connect()

    # -- migrations ---------------------------------------------------------------------

    def alembic_config(self) -> Config:
        """An Alembic configuration for this database, built without an ini file."""
        _quiet_alembic()
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(alembic_dir()))
        cfg.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False))
        return cfg

    @contextmanager
    def _migration_connection(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            sqlite = self.dialect == "sqlite"
            if sqlite:
                # SQLite batch migrations copy tables; foreign keys must be off meanwhile,
                # and the pragma only takes effect outside a transaction.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
            try:
                conn = conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                    yield conn
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]

    def upgrade(self, revision: str = "head") -> None:
        """Migrate to ``revision`` (default the newest) in one transaction.

        Safe to run from two processes at once: the second waits and finds nothing to do.
        A database already at the head is left alone without loading Alembic.
        Raises ``alembic.util.CommandError`` for an unknown revision and
        ``sqlalchemy.exc.SQLAlchemyError`` when the database fails.
        """
        if revision == "head" and script_head() is not None and self._stamped() == script_head():
            return
        _quiet_alembic()
        from alembic import command

        cfg = self.alembic_config()
        with self._migration_connection() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def _stamped(self) -> str | None:
        """The revision in ``alembic_version``, read with plain SQL; None if there is none."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        return rows[0][0] if len(rows) == 1 else None

    def downgrade(self, revision: str) -> None:
        """Migrate down to ``revision`` (``base`` empties the database of lai's tables).

        Raises like :meth:`upgrade`.
        """
        _quiet_alembic()
        from alembic import command

        cfg = self.alembic_config()
        with self._migration_connection() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

    def current(self) -> str | None:
        """The revision the database is at, None when it was never migrated."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        """The newest revision the code knows."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    # -- lifecycle -----------------------------------------------------------------------

    def conversation_deleted(self, conversation_id: str) -> None:
        """Run the deletion hooks for ``conversation_id``; a failing hook is logged."""
        for hook in tuple(self.on_conversation_deleted):
            try:
                hook(conversation_id)
            except Exception:  # the rows are gone already; leftovers are swept later
                log.exception("conversation-deleted hook %r failed for %s", hook, conversation_id)

    def dispose(self) -> None:
        """Close every pooled connection. The store can still be used afterwards."""
        self.engine.dispose()


def open_store(
    url: str | URL, *, echo: bool = False, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> Store:
    """Build a Store for ``url`` (SQLite path or ``postgresql+psycopg://...``).

    SQLite waits ``sqlite_busy_timeout_ms`` for a lock before failing with
    ``OperationalError`` (database is locked); the folder of a SQLite file is created on
    the first connection. No IO here: nothing connects or migrates until used (call
    :meth:`Store.upgrade`).
    Raises ``sqlalchemy.exc.ArgumentError`` for a bad URL.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        # Sessions run in worker threads (asyncio.to_thread); the pool hands a connection
        # to one thread at a time, so the driver's same-thread check only gets in the way.
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        # A PostgreSQL restart leaves dead pooled connections; ping before use.
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine, sqlite_busy_timeout_ms)
    return Store(engine)
