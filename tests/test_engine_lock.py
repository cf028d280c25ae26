"""One engine per data dir, with real processes: a `lai proxy` refuses to start (one
line, exit 1) while an embedded TUI runs the engine; a TUI opened while a proxy runs
attaches to it, and its embedded engine is refused; a crash leaves no stale lock."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from lai.commands.tui import make_client
from lai.config.loader import load_settings
from lai.runtime import build_runtime
from lai.tui.client import ClientError
from lai.tui.embedded import EmbeddedClient
from lai.tui.probe import proxy_answers, socket_path
from tests.fakes.upstream import FakeUpstream


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        database_url = "sqlite:///data/lai.db"
        data_dir = "data"
        auth = false

        [[providers]]
        id = "box"
        endpoint = "{url}"
        health_check_interval = 3600

        [[models]]
        id = "small"
        provider_id = "box"
    """))
    return config


async def _proxy(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0",
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _listening(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert b"listening on" in line, line


async def _stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
    await asyncio.wait_for(proc.wait(), timeout=30)


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    return _config(tmp_path, upstream.url)


async def test_a_proxy_refuses_to_start_while_an_embedded_tui_runs_the_engine(
    config: Path,
) -> None:
    settings, _ = load_settings(config)
    tui = EmbeddedClient(build_runtime(settings), config_path=config)
    await tui.start()
    try:
        # 0: no hand-over asked (tests/tui/test_handover.py has the TUI that answers).
        proc = await _proxy(config, "--handover-wait", "0")
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 1
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"lai: a lai TUI with its own engine (pid {os.getpid()}) "
                                   f"already runs the engine for {settings.server.data_dir}")
        assert "start the proxy" in lines[0]
    finally:
        await tui.close()
    # The TUI quit: the proxy starts now.
    proc = await _proxy(config)
    try:
        await _listening(proc)
    finally:
        await _stop(proc)
    assert proc.returncode == 0


async def test_a_tui_opened_while_a_proxy_runs_attaches_and_a_crash_leaves_no_lock(
    config: Path,
) -> None:
    settings, _ = load_settings(config)
    proc = await _proxy(config)
    try:
        await _listening(proc)
        sock = socket_path(settings)
        for _ in range(200):  # "listening" comes before start-up (migrations) is done
            if await asyncio.to_thread(proxy_answers, sock):
                break
            await asyncio.sleep(0.05)
        assert make_client(settings, config).mode == "attached"
        # Had the socket not answered yet (a proxy still starting), the embedded engine
        # is refused rather than run beside the proxy's.
        tui = EmbeddedClient(build_runtime(settings), config_path=config)
        with pytest.raises(ClientError) as refused:
            await tui.start()
        assert f"a lai proxy (pid {proc.pid}) already runs the engine" in refused.value.message
        await tui.close()
    finally:
        await _stop(proc, signal.SIGKILL)  # a crash: the kernel drops the lock
    tui = EmbeddedClient(build_runtime(settings), config_path=config)
    try:
        await tui.start()
        assert await tui.providers()
    finally:
        await tui.close()
