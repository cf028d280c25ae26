"""SIGTERM ends long-lived streams at once: a `lai proxy` with a TUI-like subscriber on
``/admin/events`` stops as fast as one without, and logs no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.fakes.upstream import FakeUpstream


def _config(tmp_path: Path, upstream_url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        database_url = "sqlite:///data/lai.db"
        data_dir = "data"
        auth = false
        shutdown_timeout = 30

        [[providers]]
        id = "box"
        endpoint = "{upstream_url}"
        health_check_interval = 3600

        [[models]]
        id = "small"
        provider_id = "box"
    """))
    return config


def test_sigterm_with_an_events_subscriber_exits_at_once(tmp_path: Path) -> None:
    with FakeUpstream() as upstream:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lai.cli", "proxy", "--config",
             str(_config(tmp_path, upstream.url)), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert "listening on" in line, (line, proc.stderr.read())
            url = line.rsplit(" ", 1)[1].strip()
            with httpx.Client(base_url=url, timeout=10, trust_env=False) as http, \
                    http.stream("GET", "/admin/events") as events:
                assert events.status_code == 200
                lines = events.iter_lines()
                first = next(lines)
                assert first.startswith("data: ") and '"snapshot"' in first, first
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rest = list(lines)  # the proxy ends the stream; the read returns
            code = proc.wait(timeout=10)
            elapsed = time.monotonic() - t0
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, stderr
    assert elapsed < 5, f"took {elapsed:.1f}s with shutdown_timeout = 30"
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr
    assert all(not line.startswith("data: ") or "kind" in line for line in rest)
