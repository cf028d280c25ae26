"""How much room the database takes, and giving freed room back: size, row counts, vacuum.

SQLite: the size is the database file plus its write-ahead log. Deleted rows leave free
pages inside the file; they are reused by later writes but not returned to the disk
until a vacuum. Every SQLite database lai creates has ``auto_vacuum = INCREMENTAL`` (set
on connect, before the first table exists: ``lai.store.db``), so the retention sweep can
hand free pages back in small steps (:func:`reclaim_free_pages`); a database created
before that is converted by its first ``lai db vacuum`` (:func:`vacuum`).

PostgreSQL: ``pg_database_size``; autovacuum makes dead rows reusable, ``VACUUM FULL``
(an exclusive lock, run by hand) gives the room back to the disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lai.store.db import Store

log = logging.getLogger("lai.store")

TABLES = ("conversations", "messages", "requests", "api_keys")
"""The tables ``lai db size`` counts."""

INCREMENTAL = 2
"""``PRAGMA auto_vacuum`` value of incremental vacuum."""


@dataclass(frozen=True, slots=True)
class DatabaseSize:
    """What the database takes on disk."""

    total_bytes: int
    """SQLite: the file plus its WAL; PostgreSQL: ``pg_database_size``."""
    wal_bytes: int = 0
    """SQLite: the write-ahead log (shrinks at the next checkpoint that can reset it)."""
    free_bytes: int | None = None
    """SQLite: free pages inside the file, what a vacuum would give back. None on
    PostgreSQL (ask ``pgstattuple``)."""
    auto_vacuum: str | None = None
    """SQLite: ``none``, ``full`` or ``incremental``."""


def sqlite_path(store: Store) -> Path | None:
    """The file of a SQLite store, None for PostgreSQL or an in-memory database."""
    if store.dialect != "sqlite":
        return None
    database = store.url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def database_size(store: Store) -> DatabaseSize:
    """The size of ``store`` on disk. Blocking (a query on PostgreSQL).

    Raises ``FileNotFoundError`` when a SQLite file does not exist (it is not created),
    and what the database raises when it cannot be reached.
    """
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        return DatabaseSize(total_bytes=int(size or 0))
    path = sqlite_path(store)
    if path is None:
        return DatabaseSize(total_bytes=0)
    if not path.exists():
        raise FileNotFoundError(f"no database file at {path} yet")
    main, wal = path.stat().st_size, _size(Path(f"{path}-wal"))
    with store.engine.connect() as conn:
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
        page = conn.exec_driver_sql("PRAGMA page_size").scalar() or 0
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
    return DatabaseSize(
        total_bytes=main + wal, wal_bytes=wal, free_bytes=int(free) * int(page),
        auto_vacuum={0: "none", 1: "full", 2: "incremental"}.get(int(mode or 0), str(mode)),
    )


def file_size(store: Store) -> int | None:
    """SQLite: the file plus its WAL from two ``stat`` calls, no query; None otherwise."""
    path = sqlite_path(store)
    if path is None or not path.exists():
        return None
    return path.stat().st_size + _size(Path(f"{path}-wal"))


def row_counts(store: Store) -> dict[str, int]:
    """Rows per lai table (``TABLES``); a table that does not exist yet is left out."""
    out: dict[str, int] = {}
    with store.engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in TABLES:
            if table in present:
                out[table] = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                                 or 0)
    return out


def _driver(conn: sa.Connection) -> Any:
    return conn.connection.driver_connection


def vacuum(store: Store) -> None:
    """Give the free room back to the disk.

    SQLite: ``VACUUM`` (rewrites the file; it needs free disk space about the file's size
    and holds the write lock meanwhile: writers wait, up to their busy timeout), switching
    the file to incremental auto-vacuum on the way. PostgreSQL: ``VACUUM (ANALYZE)`` of
    lai's tables, which makes dead rows reusable without locking them; only ``VACUUM
    FULL``, run by hand, shrinks the files.
    Raises what the database raises.
    """
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
        return
    with store.engine.connect() as conn:
        raw = _driver(conn)
        # Outside a transaction (the connection is in autocommit: lai.store.db).
        raw.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        raw.execute("VACUUM")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def reclaim_free_pages(
    store: Store, *, step: int = 1000, pause: float = 0.05, stop: threading.Event | None = None
) -> int:
    """SQLite with incremental auto-vacuum: hand free pages back to the disk, ``step``
    pages (4 MiB at the default page size) per write transaction with ``pause`` seconds
    between them, so the recorder's writes get in. Answers the pages freed; 0 on
    PostgreSQL or on a file without incremental auto-vacuum (``lai db vacuum`` converts
    it). Stops early when ``stop`` is set. Raises what the database raises.
    """
    if sqlite_path(store) is None:
        return 0
    freed = 0
    stop = stop or threading.Event()
    with store.engine.connect() as conn:
        raw = _driver(conn)
        if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
            return 0
        while not stop.is_set():
            before = raw.execute("PRAGMA freelist_count").fetchone()[0]
            if before == 0:
                break
            # executescript steps the pragma to its end; execute() would free one page.
            try:
                raw.executescript(f"PRAGMA incremental_vacuum({int(step)})")
            except sqlite3.OperationalError as exc:  # busy past the timeout: next sweep
                log.warning("incremental vacuum stopped: %s", exc)
                break
            after = raw.execute("PRAGMA freelist_count").fetchone()[0]
            if after >= before:
                break
            freed += before - after
            stop.wait(pause)
    return freed


def human_bytes(n: int) -> str:
    """``n`` bytes as ``12.3 MiB``."""
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"

