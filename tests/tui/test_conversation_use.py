"""Using a conversation from pane 2 over the real engine and SQLite store: filtering by
source and key, continuing it in the chat pane (same id, history sent again), and
exporting it to Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input

from lai.store import conversations
from lai.store.writer import record_from_event, write_batch
from lai.tui.screens.chat import ChatScreen
from lai.tui.screens.conversation import ConversationScreen
from lai.tui.screens.prompt import PromptScreen
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider
from tests.store.helpers import finished
from tests.tui.conftest import SIZE, wait_for

FIRST_QUESTION = "Which sourdough starter works best in a cold kitchen?"


def seed(store: Any) -> None:
    """Two conversations from two clients with two keys."""
    store.upgrade()
    events = [
        finished(conversation_id="conv_aider", started_at=1_767_225_600, key_name="agent-ci",
                 source="aider", answer="Use a rye starter.",
                 messages=[{"role": "user", "content": FIRST_QUESTION}]),
        finished(conversation_id="conv_script", started_at=1_767_225_700, key_name="cron",
                 source="script", messages=[{"role": "user", "content": "ping"}]),
    ]
    with store.write_session() as session:
        write_batch(session, [record_from_event(e) for e in events])


async def open_conversation(pilot: Any, conversation_id: str) -> ConversationScreen:
    await pilot.press("2")
    pane = pilot.app.screen
    table = pane.query_one("#conversations", DataTable)
    await wait_for(pilot, lambda: table.row_count == 2, what="the list")
    # Listed by the first user message, with key and source.
    titles = {str(r.value): table.get_row(r) for r in table.rows}
    assert titles["conv_aider"][1].plain == FIRST_QUESTION
    assert ("aider", "agent-ci") == (titles["conv_aider"][2], titles["conv_aider"][4])
    index = [str(r.value) for r in table.rows].index(conversation_id)
    table.move_cursor(row=index)
    await pilot.press("enter")
    screen = pilot.app.screen
    assert isinstance(screen, ConversationScreen)
    await wait_for(pilot, lambda: screen.conv is not None, what="the conversation")
    return screen


async def test_filter_by_source_and_key(embedded_app: Any, upstream: Any) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    seed(runtime.store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        pane = app.screen
        table = pane.query_one("#conversations", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="the list")
        await pilot.press("slash")
        box = pane.query_one("#search", Input)
        box.value = "source:aider"
        await wait_for(pilot, lambda: [str(r.value) for r in table.rows] == ["conv_aider"],
                       what="the aider conversation alone")
        box.value = "key:cron"
        await wait_for(pilot, lambda: [str(r.value) for r in table.rows] == ["conv_script"],
                       what="the cron key's conversation alone")
        box.value = "key:cron sourdough"  # the filter and the words both apply
        await wait_for(pilot, lambda: table.row_count == 0, what="nothing")


async def test_continue_in_chat_adds_turns_to_the_same_conversation(
    embedded_app: Any, upstream: Any
) -> None:
    upstream.default = Behaviour(content="Keep it warm, too.")
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    seed(runtime.store)
    async with app.run_test(size=SIZE) as pilot:
        await open_conversation(pilot, "conv_aider")
        await pilot.press("c")
        chat = app.screen
        assert isinstance(chat, ChatScreen) and chat.conversation_id == "conv_aider"
        await wait_for(pilot, lambda: len(chat.history) == 2, what="the history")
        chat.query_one("#message", Input).value = "And in summer?"
        chat.query_one("#message", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(chat.history) == 4 and not chat.streaming,
                       what="the answer")

    sent = [r.body for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert [m["content"] for m in sent[-1]["messages"]] == [
        FIRST_QUESTION, "Use a rye starter.", "And in summer?"]
    conv = conversations.get_conversation(runtime.store, "conv_aider")
    assert [m["content"] for m in conv["messages"]] == [
        FIRST_QUESTION, "Use a rye starter.", "And in summer?", "Keep it warm, too."]
    assert conversations.count_conversations(runtime.store) == 2  # no new conversation


async def test_export_writes_every_message(
    embedded_app: Any, upstream: Any, tmp_path: Path
) -> None:
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    seed(runtime.store)
    md, js = tmp_path / "out" / "bread.md", tmp_path / "out" / "bread.json"
    md.parent.mkdir()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_conversation(pilot, "conv_aider")
        for target in (md, js, md):  # the third time the file exists: refused, kept
            await pilot.press("x")
            prompt = app.screen
            assert isinstance(prompt, PromptScreen)
            prompt.query_one(Input).value = str(target)
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert app.screen is screen
        await wait_for(pilot, lambda: md.exists() and js.exists(), what="both files")

    text = md.read_text()
    assert text.startswith(f"# {FIRST_QUESTION}")
    assert "## user" in text and "## assistant (gpu · qwen" in text
    assert FIRST_QUESTION in text and "Use a rye starter." in text
    doc = json.loads(js.read_text())
    assert doc["id"] == "conv_aider"
    assert [m["content"] for m in doc["messages"]] == [FIRST_QUESTION, "Use a rye starter."]
