"""Pane 2 over a real SQLite store: pages, full-text search, open, rename, delete."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.widgets import DataTable, Input, Static

from lai.store import conversations
from lai.store.writer import record_from_event, write_batch
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.conversation import ConversationScreen
from lai.tui.screens.conversations import PAGE_SIZE
from lai.tui.screens.prompt import PromptScreen
from tests.harness import model, provider
from tests.store.helpers import finished
from tests.tui.conftest import SIZE, wait_for

COUNT = 45


def seed(store: Any) -> None:
    """COUNT conversations, one request each, an hour apart (conv_044 newest)."""
    store.upgrade()
    events = [
        finished(conversation_id=f"conv_{i:03d}", started_at=1_767_225_600 + 3600 * i,
                 messages=[{"role": "user", "content": f"question {i} about "
                            + ("zebras" if i % 10 == 3 else "cats")}], source="api")
        for i in range(COUNT)
    ]
    with store.write_session() as session:
        write_batch(session, [record_from_event(e) for e in events])


def plain(renderable: Any) -> str:
    """What a Rich renderable shows, as text."""
    console = Console(width=118, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def page_info(pane: Any) -> str:
    return str(pane.query_one("#page-info", Static).render())


async def test_pages_search_open_rename_and_delete(embedded_app: Any, upstream: Any) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    store = runtime.store
    seed(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        pane = app.screen
        table = pane.query_one("#conversations", DataTable)
        await wait_for(pilot, lambda: table.row_count == PAGE_SIZE, what="the first page")
        assert table.get_row_at(0)[-1].plain == "conv_044"  # newest first
        assert page_info(pane).startswith("Page 1 of 3 · 1–20 of 45")

        await pilot.press("n", "n")
        await wait_for(pilot, lambda: table.row_count == COUNT - 2 * PAGE_SIZE, what="page 3")
        assert table.get_row_at(0)[-1].plain == "conv_004"
        await pilot.press("p")
        await wait_for(pilot, lambda: page_info(pane).startswith("Page 2"), what="page 2")

        # Full-text search over message text, as the operator types.
        await pilot.press("slash")
        pane.query_one("#search", Input).value = "zebras"
        await wait_for(pilot, lambda: table.row_count == 5, what="the matches")
        ids = sorted(table.get_row_at(i)[-1].plain for i in range(5))
        assert ids == ["conv_003", "conv_013", "conv_023", "conv_033", "conv_043"]
        await pilot.press("escape")  # back to the list

        # Open the first match, see its messages.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationScreen), what="view")
        await wait_for(pilot, lambda: app.screen.query(".message"), what="messages")
        text = " ".join(plain(m.content) for m in app.screen.query(Static).filter(".message"))
        assert "question 43 about zebras" in text and "gpu · qwen · 5 tokens" in text
        await pilot.press("escape")

        # Rename it.
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="prompt")
        app.screen.query_one(Input).value = "Zebra facts"
        await pilot.press("enter")
        await wait_for(pilot, lambda: conversations.get_conversation(store, "conv_043")
                       ["display_name"] == "Zebra facts", what="the new name")

        # Delete it, after confirming.
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 4, what="the row to go")
    assert conversations.count_conversations(store) == COUNT - 1


def test_a_message_whose_text_retention_removed_says_so() -> None:
    from lai.tui.screens.conversation import message_block

    console = Console(file=io.StringIO(), width=80)
    console.print(message_block({"role": "user", "content": None, "created_at": 0,
                                 "content_removed_at": 86400}, str))
    assert "text removed: server.content_retention_days" in console.file.getvalue()  # type: ignore[attr-defined]
