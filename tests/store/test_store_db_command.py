"""``lai db upgrade|current|downgrade`` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lai.store.db import open_store


def _lai(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text('[server]\ndatabase_url = "sqlite:///data/never-used.db"\n')
    env = {**os.environ, "LAI_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "lai.cli", "db", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_upgrade_current_downgrade(tmp_path: Path, empty_url: str) -> None:
    out = _lai(tmp_path, empty_url, "current")
    assert out.returncode == 0, out.stderr
    assert "empty" in out.stdout

    out = _lai(tmp_path, empty_url, "upgrade")
    assert out.returncode == 0, out.stderr
    head = open_store(empty_url).head()
    assert f"-> {head} (head)" in out.stdout

    out = _lai(tmp_path, empty_url, "current")
    assert out.returncode == 0 and f"{head} (head)" in out.stdout

    out = _lai(tmp_path, empty_url, "downgrade", "0001")
    assert out.returncode == 0, out.stderr
    assert "head is" in _lai(tmp_path, empty_url, "current").stdout

    out = _lai(tmp_path, empty_url, "downgrade", "no-such-revision")
    assert out.returncode == 2 and "no-such-revision" in out.stderr
    assert not (tmp_path / "data" / "never-used.db").exists()  # LAI_DATABASE_URL won


def test_unreachable_database_exits_1(tmp_path: Path) -> None:
    out = _lai(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none", "current")
    assert out.returncode == 1
    assert "127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr
