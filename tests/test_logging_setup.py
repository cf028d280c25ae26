"""Log hygiene outside the proxy's request path: the TUI's rotated log file without
per-poll httpx lines, and migrations without Alembic's plugin chatter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=60, check=True)


def test_tui_log_is_rotated_and_has_no_httpx_request_lines(tmp_path: Path) -> None:
    code = f"""
import logging
from lai.commands.tui import setup_logging, LOG_MAX_BYTES
from lai.config.models import Settings
settings = Settings.model_validate({{"server": {{"data_dir": {str(tmp_path / "data")!r}}}}})
setup_logging(settings)
logging.getLogger("httpx").info('HTTP Request: GET http://lai/admin/requests "200 OK"')
logging.getLogger("lai.tui").info("attached")
line = "x" * 1000
for _ in range(LOG_MAX_BYTES // 1000 * 2):
    logging.getLogger("lai.tui").info(line)
"""
    run_python(code, tmp_path)
    data = tmp_path / "data"
    logs = sorted(p.name for p in data.iterdir() if p.name.startswith("tui.log"))
    assert logs == ["tui.log", "tui.log.1", "tui.log.2"]
    for name in logs:
        assert (data / name).stat().st_size <= 5 * 1024 * 1024 + 2000
    text = "".join((data / name).read_text() for name in logs)
    assert "HTTP Request" not in text


def test_migrating_logs_no_alembic_plugin_lines(tmp_path: Path) -> None:
    code = f"""
import logging
logging.basicConfig(level=logging.INFO)
from lai.store.db import open_store
open_store("sqlite:///{tmp_path / 'lai.db'}").upgrade()
"""
    result = run_python(code, tmp_path)
    assert "Running upgrade" in result.stderr  # the migration itself is still told
    assert "alembic.runtime.plugins" not in result.stderr


def test_tui_log_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    code = f"""
import logging, os
os.umask(0o022)
from lai.commands.tui import setup_logging, LOG_MAX_BYTES
from lai.config.models import Settings
settings = Settings.model_validate({{"server": {{"data_dir": {str(tmp_path / "data")!r}}}}})
setup_logging(settings)
for _ in range(LOG_MAX_BYTES // 1000 + 10):
    logging.getLogger("lai.tui").info("x" * 1000)
"""
    run_python(code, tmp_path)
    for name in ("tui.log", "tui.log.1"):
        assert (tmp_path / "data" / name).stat().st_mode & 0o777 == 0o600
