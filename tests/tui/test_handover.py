"""A `lai proxy` started while an embedded TUI runs the engine asks it to hand over, with
real processes: the TUI asks its operator; yes stops its engine, the proxy starts and the
TUI attaches to it (chat goes through the proxy); no, or no answer, and the proxy exits
with its one-line refusal while the TUI keeps routing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Markdown

from lai import enginelock
from lai.config.loader import load_settings
from lai.runtime import build_runtime
from lai.tui.app import LaiApp
from lai.tui.client import ChatFinished
from lai.tui.embedded import EmbeddedClient
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.widgets.header import PaneHeader
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.test_engine_lock import _config, _listening, _proxy, _stop
from tests.tui.conftest import SIZE, wait_for


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    return _config(tmp_path, upstream.url)


def embedded(config: Path) -> tuple[LaiApp, Path]:
    settings, _ = load_settings(config)
    client = EmbeddedClient(build_runtime(settings), config_path=config)
    return LaiApp(client), settings.server.data_dir


async def _asked(pilot: Pilot[Any], app: LaiApp) -> ConfirmScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30,
                   what="the hand-over question")
    assert isinstance(app.screen, ConfirmScreen)
    return app.screen


async def test_yes_hands_the_engine_to_the_proxy_and_attaches(config: Path) -> None:
    app, data_dir = embedded(config)
    proc = None
    async with app.run_test(size=SIZE) as pilot:
        providers = app.screen.query_one("#providers", DataTable)
        await wait_for(pilot, lambda: providers.row_count == 1,
                       what="the embedded engine's board")
        proc = await _proxy(config)
        try:
            dialog = await _asked(pilot, app)
            assert "hand over and attach" in dialog.title_text
            assert f"(pid {proc.pid})" in dialog.body_text
            await pilot.press("y")
            await wait_for(pilot, lambda: app.client.mode == "attached", timeout=90,
                           what="attached to the proxy")
            await _listening(proc)
            header = app.screen.query_one(PaneHeader)
            assert header.mode == "attached"
            assert header.location == str(data_dir / "lai.sock")
            # The proxy runs the engine now; the TUI's chat goes through it.
            with pytest.raises(enginelock.EngineLocked) as held:
                enginelock.acquire(data_dir, "tui")
            assert f"a lai proxy (pid {proc.pid})" in held.value.message
            events = [e async for e in app.client.chat(
                {"model": "small", "messages": [{"role": "user", "content": "hi"}],
                 "stream": True}, conversation_id="conv_handover")]
            assert isinstance(events[-1], ChatFinished) and events[-1].provider == "box"
            assert [p.id for p in await app.client.providers()] == ["box"]
            assert not (data_dir / enginelock.HANDOVER_NAME).exists()
            await wait_for(pilot, lambda: any("Attached to the lai proxy" in str(n.message)
                                              for n in app._notifications), what="notice")
        finally:
            await _stop(proc)
    assert proc.returncode == 0


async def test_an_answer_streaming_at_the_hand_over_is_stopped_and_recorded(
    config: Path, upstream: FakeUpstream,
) -> None:
    from sqlmodel import select

    from lai.store.db import open_store
    from lai.store.models import RequestRecord
    from tests.tui.test_chat_pane import open_chat, say

    upstream.default = Behaviour(chunks=400, delay=0.05)
    app, data_dir = embedded(config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        chat = await open_chat(pilot)
        await say(pilot, chat, "count to 400")
        await wait_for(pilot, lambda: "tok3" in chat.query(Markdown).last().source,
                       what="some tokens")
        proc = await _proxy(config)
        try:
            await _asked(pilot, app)
            await pilot.press("y")
            await wait_for(pilot, lambda: app.client.mode == "attached", timeout=90,
                           what="attached to the proxy")
            assert not chat.streaming
            await wait_for(pilot, lambda: upstream.disconnects == 1, what="upstream closed")
        finally:
            await _stop(proc)
    settings, _ = load_settings(config)
    store = open_store(settings.server.database_url)
    try:
        with store.session() as session:
            rows = session.exec(select(RequestRecord).where(
                RequestRecord.conversation_id == chat.conversation_id)).all()
    finally:
        store.dispose()
    assert len(rows) == 1 and rows[0].status != "success", rows
    assert rows[0].completion_tokens > 0


async def test_no_keeps_the_engine_and_the_proxy_exits_with_one_line(config: Path) -> None:
    app, data_dir = embedded(config)
    async with app.run_test(size=SIZE) as pilot:
        providers = app.screen.query_one("#providers", DataTable)
        await wait_for(pilot, lambda: providers.row_count == 1,
                       what="the embedded engine's board")
        proc = await _proxy(config)
        try:
            await _asked(pilot, app)
            await pilot.press("n")
            _out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        finally:
            await _stop(proc)
        assert proc.returncode == 1
        lines = err.decode().strip().splitlines()
        assert lines[0].startswith(f"lai: a lai TUI with its own engine (pid {os.getpid()}) "
                                   "runs the engine for")
        assert "asked it to hand over" in lines[0]
        assert "declined to hand over" in lines[-1] and len(lines) == 2, lines
        assert app.client.mode == "embedded"
        assert [p.id for p in await app.client.providers()] == ["box"]
        with pytest.raises(enginelock.EngineLocked):  # still this TUI's
            enginelock.acquire(data_dir, "proxy")
        # A proxy restarted by its service manager is declined without asking again.
        again = await _proxy(config)
        try:
            _out, err = await asyncio.wait_for(again.communicate(), timeout=30)
        finally:
            await _stop(again)
        assert again.returncode == 1 and "declined to hand over" in err.decode()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_no_answer_and_the_proxy_gives_up(config: Path) -> None:
    settings, _ = load_settings(config)
    tui = EmbeddedClient(build_runtime(settings), config_path=config)
    await tui.start()
    try:
        proc = await _proxy(config, "--handover-wait", "1")
        asked = False
        for _ in range(200):
            if await tui.handover_request() == proc.pid:
                asked = True
                break
            await asyncio.sleep(0.05)
        assert asked, "the proxy asked for the engine"
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 1
        assert err.decode().strip().splitlines()[-1].endswith(
            "did not hand over within 1 s; close it, start the proxy, then open `lai` "
            "again: it attaches to the proxy.")
        assert await tui.handover_request() is None  # withdrawn
    finally:
        await tui.close()
