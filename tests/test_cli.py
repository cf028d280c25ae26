"""The command line as a user meets it: one readable line for every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lai.config.loader import load_settings
from lai.errors import ConfigError


def lai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lai.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(cwd)})


@pytest.mark.parametrize("url", ["nonsense", "mysql2://x/y", ""])
def test_a_bad_database_url_is_a_config_error(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[server]\ndatabase_url = "{url}"\n')
    with pytest.raises(ConfigError, match=r"server\.database_url"):
        load_settings(cfg)
    out = lai("keys", "list", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "server.database_url" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_bad_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    out = lai("proxy", "--port", port, cwd=tmp_path)
    assert out.returncode == 2
    assert "is not a port number" in out.stderr


def test_no_config_anywhere_says_where_it_looked(tmp_path: Path) -> None:
    out = lai("proxy", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("lai: ") and "lai config init" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "config.toml"
        cfg.write_text('[server]\nauth = false\n')
        out = lai("proxy", "--config", str(cfg), "--port", str(port), cwd=tmp_path)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
