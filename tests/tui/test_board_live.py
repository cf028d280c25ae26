"""The board over real parts: a queued request appears and leaves, failures are listed
(also when attaching to a proxy that saw them before), and a proxy that stops turns the
board stale until it is back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from lai.config.loader import load_settings
from lai.engine.types import RequestContext
from lai.store.db import open_store
from lai.tui.app import LaiApp
from lai.tui.attached import AttachedClient
from lai.tui.screens.board import BoardScreen
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider
from tests.tui.conftest import SIZE, wait_for
from tests.tui.test_attached import CONFIG


def body(text: str = "hi") -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


async def test_a_queued_request_is_listed_until_it_gets_a_slot(
    embedded_app: Any, upstream: FakeUpstream
) -> None:
    upstream.default = Behaviour(content="slow answer here", delay=2.0)
    app, runtime = embedded_app([provider("box", upstream.url, max_concurrent=1)],
                                [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen
        assert isinstance(board, BoardScreen)
        queue = board.query_one("#queue", DataTable)
        engine = runtime.engine
        first = asyncio.create_task(engine.complete(body(), RequestContext(key_name="ana")))
        await wait_for(pilot, lambda: engine.in_flight(), what="the first request's slot")
        second = asyncio.create_task(engine.complete(body(), RequestContext(
            key_name="nightly-batch")))
        await wait_for(pilot, lambda: queue.row_count == 1 and queue.display,
                       what="the waiting request on the board")
        row = queue.get_row_at(0)
        assert (row[0], row[1], row[2]) == ("1", "nightly-batch", "auto")
        # When it should get its slot, as the engine expects it (the first request's
        # service time: one ahead on one slot), e.g. "~2.0 s".
        (waiting,) = engine.queued()
        assert waiting.estimated_start_ms is not None and waiting.estimated_start_ms > 0
        assert str(row[5]) == f"~{waiting.estimated_start_ms / 1000:.1f} s"
        await asyncio.gather(first, second)
        await wait_for(pilot, lambda: queue.row_count == 0 and not queue.display,
                       what="the queue to empty")


async def test_failures_are_listed(embedded_app: Any, upstream: FakeUpstream) -> None:
    upstream.default = Behaviour(mode="status", status=500, error_message="GPU fell over")
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen
        failures = board.query_one("#failures", DataTable)
        with contextlib.suppress(Exception):
            await runtime.engine.complete(body(), RequestContext(key_name="agent-ci"))
        await wait_for(pilot, lambda: failures.row_count >= 1, what="the failure")
        cells = [str(c) for c in failures.get_row_at(0)]
        assert cells[1] == "box" and cells[4] == "agent-ci"
        assert "502" in cells[2] and "GPU fell over" in cells[3]


async def start_proxy(config: Path, log: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"),
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert b"lai proxy listening on" in line, line
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), timeout=30)


async def test_attached_board_goes_stale_and_comes_back(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.default = Behaviour(mode="status", status=503, error_message="warming up")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(url=upstream.url))
    proc = await start_proxy(config, tmp_path / "proxy.log")
    try:
        settings, _ = load_settings(config)
        # A failure the proxy saw before the TUI attached is listed all the same.
        sock = settings.server.data_dir / "lai.sock"
        client = AttachedClient(settings, open_store(settings.server.database_url), sock=sock)
        with contextlib.suppress(Exception):
            await client.http.post("/v1/chat/completions", json=body(), timeout=30)
        app = LaiApp(client)
        async with app.run_test(size=SIZE) as pilot:
            board = app.screen
            assert isinstance(board, BoardScreen)
            failures = board.query_one("#failures", DataTable)
            await wait_for(pilot, lambda: failures.row_count >= 1, what="the earlier failure")
            assert "warming up" in str(failures.get_row_at(0)[3])

            proc.kill()  # the proxy dies (kill -9): nothing tells the TUI but silence
            await proc.wait()
            await wait_for(pilot, lambda: board.stale, timeout=5, what="the board to go stale")
            assert "disconnected since" in str(board.query_one("#badge").render())
            assert board.query_one("#board").has_class("stale")

            proc = await start_proxy(config, tmp_path / "proxy.log")
            await wait_for(pilot, lambda: not board.stale, timeout=10, what="live again")
            assert not board.query_one("#badge").display
    finally:
        await stop(proc)
