"""``lai`` attached to a real ``lai proxy`` subprocess over its admin socket."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Markdown

from lai.commands.tui import make_client
from lai.config.loader import load_settings
from lai.store import conversations
from lai.store.db import open_store
from lai.tui.app import LaiApp
from lai.tui.probe import proxy_answers
from lai.tui.screens.provider_form import ToggleScreen
from tests.fakes.upstream import FakeUpstream
from tests.tui.conftest import SIZE, wait_for

CONFIG = """\
[server]
host = "127.0.0.1"
database_url = "sqlite:///data/lai.db"
data_dir = "data"
auth = true   # the admin socket needs no key all the same

[[providers]]
id = "box"
name = "Test box"
type = "local"
endpoint = "{url}"
max_concurrent = 2
health_check_interval = 3600

[[models]]
id = "m1"
provider_id = "box"
context_window = 32768
"""


@pytest.fixture
async def proxy(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Path]:
    """A `lai proxy` subprocess for a config in tmp_path; yields the config path."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(url=upstream.url))
    log = (tmp_path / "proxy.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert b"lai proxy listening on http://127.0.0.1:" in line, line
        # "listening" comes before start-up (migrations) is done; the socket answers after.
        sock = config.parent / "data" / "lai.sock"
        for _ in range(200):
            if await asyncio.to_thread(proxy_answers, sock):
                break
            await asyncio.sleep(0.05)
        yield config
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)
        log.close()


async def test_attached_board_chat_and_toggle(proxy: Path, upstream: FakeUpstream) -> None:
    settings, _ = load_settings(proxy)
    client = make_client(settings, proxy)
    assert client.mode == "attached" and client.location.endswith("data/lai.sock")
    app = LaiApp(client)
    async with app.run_test(size=SIZE) as pilot:
        assert "attached" in str(app.screen.query_one("#where").render())
        table = app.screen.query_one("#providers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the proxy's provider")
        assert "Test box" in str(table.get_row_at(0))

        # A chat goes through the proxy, labelled as the TUI's.
        await pilot.press("4")
        chat = app.screen
        await wait_for(pilot, lambda: chat.query("#model-list").first().option_count,
                       what="models")
        chat.query_one("#message", Input).value = "hello over the socket"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not chat.streaming and chat.history, what="the answer")
        assert chat.query(Markdown).last().source == "tok0 tok1 tok2"
        (request,) = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
        assert request.body["messages"][-1]["content"] == "hello over the socket"

        # The board's toggle reaches the proxy's engine.
        await pilot.press("escape", "1")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ToggleScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: "disabled" in str(table.get_cell("box", "status")),
                       what="the row to show it disabled")
        (snapshot,) = await client.providers()
        assert snapshot.status == "disabled"

    # The proxy recorded the conversation in the shared store, with source "tui".
    store = open_store(settings.server.database_url)
    try:
        async def recorded() -> list[dict[str, Any]]:
            for _ in range(100):
                page = await asyncio.to_thread(conversations.list_conversations, store)
                if page.data:
                    return page.data
                await asyncio.sleep(0.1)
            return []

        (conv,) = await recorded()
        assert conv["source"] == "tui" and conv["message_count"] == 2
    finally:
        store.dispose()
