"""``lai db size``, ``lai db vacuum`` and ``lai db backup`` as a user runs them, on both
backends; and SQLite handing the room of deleted rows back to the disk."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lai.cli import main
from lai.store.db import open_store
from lai.store.retention import sweep
from lai.store.space import database_size, reclaim_free_pages, sqlite_path
from lai.store.writer import record_from_event, write_batch
from tests.store.helpers import finished
from tests.store.test_store_db_command import _lai

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC).timestamp()


@dataclass
class _Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def lai_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``lai_db(url, *args)``: ``lai db ARGS`` in this process (the CLI's own ``main``,
    parsing, exit code and output included), against ``url``."""
    config = tmp_path / "config.toml"
    config.write_text('[server]\ndatabase_url = "sqlite:///data/never-used.db"\n')

    def run(url: str, *args: str) -> _Ran:
        monkeypatch.setenv("LAI_DATABASE_URL", url)
        capsys.readouterr()
        code = main(["db", *args, "--config", str(config)])
        out = capsys.readouterr()
        return _Ran(code, out.out, out.err)

    return run


def _fill(url: str, n: int = 400) -> None:
    store = open_store(url)
    try:
        store.upgrade()
        with store.write_session() as session:
            write_batch(session, [record_from_event(finished(
                conversation_id=f"c{i}", started_at=LONG_AGO,
                messages=[{"role": "user", "content": "x" * 2000 + str(i)}]))
                for i in range(n)])
    finally:
        store.dispose()


def _size(lai_db, url: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    out = lai_db(url, "size", "--json")
    assert out.returncode == 0, out.stderr
    data: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return data


def test_size_shows_bytes_and_rows(tmp_path: Path, empty_url: str, lai_db) -> None:  # type: ignore[no-untyped-def]
    _fill(empty_url, 30)
    data = _size(lai_db, empty_url)
    assert data["bytes"] > 0
    assert data["rows"] == {"conversations": 30, "messages": 60, "requests": 30, "api_keys": 0}
    text = _lai(tmp_path, empty_url, "size")
    assert text.returncode == 0, text.stderr
    assert "requests" in text.stdout and "30" in text.stdout
    assert "password" not in text.stdout


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path, lai_db) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'nothing' / 'lai.db'}"
    out = lai_db(url, "size")
    assert out.returncode == 1 and "no database file" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "nothing" / "lai.db").exists()


def test_sqlite_gives_deleted_rows_back_to_the_disk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lai.db'}"
    _fill(url)
    store = open_store(url)
    try:
        full = database_size(store)
        assert full.auto_vacuum == "incremental"  # set before lai's first table
        sweep(store, now=datetime.now(UTC), retention_days=30, content_retention_days=None,
              pause=0)
        swept = database_size(store)
        assert swept.free_bytes and swept.free_bytes > 500_000
        assert reclaim_free_pages(store, step=50, pause=0) > 0
        after = database_size(store)
        assert after.free_bytes == 0
        path = sqlite_path(store)
        assert path is not None and path.stat().st_size < full.total_bytes - 500_000
    finally:
        store.dispose()


def test_vacuum_converts_an_old_sqlite_file_and_shrinks_it(tmp_path: Path, lai_db) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a file made before lai set auto_vacuum
        conn.execute("CREATE TABLE leftover (x)")
    url = f"sqlite:///{path}"
    _fill(url)
    store = open_store(url)
    try:
        sweep(store, now=datetime.now(UTC), retention_days=30, content_retention_days=None,
              pause=0)
        assert database_size(store).auto_vacuum == "none"
        assert reclaim_free_pages(store, pause=0) == 0  # nothing to do it with
    finally:
        store.dispose()
    before = _size(lai_db, url)
    out = lai_db(url, "vacuum")
    assert out.returncode == 0, out.stderr
    assert "vacuumed" in out.stdout
    after = _size(lai_db, url)
    assert after["auto_vacuum"] == "incremental" and after["free_bytes"] == 0
    assert after["bytes"] < before["bytes"] - 500_000
    assert after["rows"]["requests"] == 0


def test_vacuum_and_backup_on_postgresql(tmp_path: Path, pg_database: str, lai_db) -> None:  # type: ignore[no-untyped-def]
    out = lai_db(pg_database, "vacuum")
    assert out.returncode == 0, out.stderr
    assert "VACUUM FULL" in out.stdout
    out = lai_db(pg_database, "backup", str(tmp_path / "copy.db"))
    assert out.returncode == 2
    assert "pg_dump" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "copy.db").exists()


def test_backup_refuses_what_it_should(tmp_path: Path, lai_db) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'lai.db'}"
    _fill(url, 3)
    out = lai_db(url, "backup", str(tmp_path / "lai.db"))
    assert out.returncode == 2 and "live database" in out.stderr
    (tmp_path / "taken.db").write_text("keep me")
    out = lai_db(url, "backup", str(tmp_path / "taken.db"))
    assert out.returncode == 2 and "--force" in out.stderr
    assert (tmp_path / "taken.db").read_text() == "keep me"
    out = lai_db(url, "backup", str(tmp_path / "taken.db"), "--force")
    assert out.returncode == 0, out.stderr
    out = lai_db(url, "backup", str(tmp_path / "no" / "such" / "x.db"))
    assert out.returncode == 2 and "is not a folder" in out.stderr
    folder = tmp_path / "backups"
    folder.mkdir()
    out = lai_db(url, "backup", str(folder))
    assert out.returncode == 0, out.stderr
    (made,) = folder.iterdir()
    assert made.name.startswith("lai-") and made.suffix == ".db"
    assert made.stat().st_mode & 0o777 == 0o600
