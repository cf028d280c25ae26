"""``lai db backup PATH``: a consistent copy of a live SQLite database.

SQLite's online backup API copies the database inside one read transaction: in WAL mode
the proxy keeps writing meanwhile (its writes go to the WAL, after the snapshot), and the
copy is the database as it was when the copy began, committed transactions only. The copy
is written to a temporary file next to ``PATH`` created with mode 0600, checked with
``PRAGMA integrity_check``, flushed to disk and renamed into place, so ``PATH`` is either
the old file or a complete new one.

PostgreSQL is not copied here: ``pg_dump`` does that job (:data:`PG_DUMP_HINT`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lai.errors import InvalidRequest, LaiError
from lai.store.db import Store
from lai.store.space import sqlite_path

PG_DUMP_HINT = (
    "lai db backup copies SQLite files; for PostgreSQL use pg_dump "
    "(e.g. pg_dump --format=custom --file=lai.dump DATABASE_URL, restore with pg_restore)"
)


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup."""

    path: Path
    bytes: int
    requests: int
    conversations: int
    seconds: float


def default_name(now: datetime | None = None) -> str:
    """The file name used when ``PATH`` is a folder: ``lai-20261201T233000Z.db``."""
    return f"lai-{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}.db"


def resolve_destination(store: Store, path: Path, *, force: bool = False) -> Path:
    """Where the backup of ``store`` goes for the user's ``path``: ``path`` itself, or a
    timestamped file inside it when it is an existing folder.

    Raises InvalidRequest (a usage error) for PostgreSQL, an in-memory database, the live
    file itself, a missing parent folder, or an existing file without ``force``.
    """
    source = sqlite_path(store)
    if store.dialect == "postgresql":
        raise InvalidRequest(PG_DUMP_HINT)
    if source is None:
        raise InvalidRequest(f"{store.url.render_as_string(hide_password=True)} is not a "
                             "database file; nothing to back up")
    dest = path.expanduser()
    if dest.is_dir():
        dest = dest / default_name()
    if not dest.parent.is_dir():
        raise InvalidRequest(f"{dest.parent} is not a folder")
    live = {source.resolve(), Path(f"{source.resolve()}-wal"), Path(f"{source.resolve()}-shm")}
    if dest.resolve() in live:
        raise InvalidRequest(f"{dest} is the live database; back up to another file")
    if dest.exists() and not force:
        raise InvalidRequest(f"{dest} exists; pass --force to replace it")
    return dest


def backup_sqlite(store: Store, destination: Path) -> BackupResult:
    """Copy the SQLite database of ``store`` to ``destination`` (a file path, see
    :func:`resolve_destination`) while other processes keep using it.

    Raises LaiError when the source is missing, the copy fails (disk full, no permission)
    or does not pass ``PRAGMA integrity_check``; ``destination`` is then left as it was.
    """
    source = sqlite_path(store)
    if source is None or not source.exists():
        raise LaiError(f"no database file at {source} yet")
    began = time.monotonic()
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        # O_EXCL and 0600 from the first byte: the copy holds every conversation.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # The store's own connection (WAL, busy timeout); the backup only reads from it.
        with store.engine.connect() as conn:
            src: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)  # all pages in one step: one read snapshot, no restarts
                # The copy stands alone: no WAL next to it when it is restored.
                dst.execute("PRAGMA journal_mode = DELETE")
                check = [row[0] for row in dst.execute("PRAGMA integrity_check")]
                requests, conversations = _counts(dst)
            finally:
                dst.close()
        if check != ["ok"]:
            raise LaiError(f"the copy failed PRAGMA integrity_check: {'; '.join(check[:3])}")
        _fsync(tmp)
        os.replace(tmp, destination)
        _fsync(destination.parent)
    except (OSError, sqlite3.Error) as exc:
        raise LaiError(f"backup to {destination} failed: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return BackupResult(destination, destination.stat().st_size, requests, conversations,
                        time.monotonic() - began)


def _counts(conn: sqlite3.Connection) -> tuple[int, int]:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    out = []
    for table in ("requests", "conversations"):
        out.append(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                   if table in tables else 0)
    return out[0], out[1]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
