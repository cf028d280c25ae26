"""Pane 2, conversations: newest first, one page at a time, with full-text search and
filters (``source:aider user:ana key:agent-ci model:qwen`` in the search box).

Only the page on screen is read (limit/offset), so a store with 100 000 conversations
opens as fast as one with ten. An unnamed conversation is listed by the start of its
first user message.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from lai.tui.screens.base import PaneScreen
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.conversation import ConversationScreen
from lai.tui.screens.prompt import PromptScreen
from lai.tui.widgets.header import PaneHeader
from lai.tui.widgets.tables import selected_key, sync_rows

PAGE_SIZE = 20
SEARCH_DELAY = 0.3
"""Seconds of quiet typing before the search runs."""
COLUMNS = (("updated", "Last activity"), ("name", "Title"), ("source", "Source"),
           ("user", "User"), ("key", "Key"), ("model", "Model"), ("messages", "Msgs"),
           ("tokens", "Tokens"), ("id", "Id"))
FILTER_WORDS = {"source": "source", "user": "username", "key": "key_name", "model": "model"}
"""``word:value`` in the search box -> the store's filter name."""


def parse_search(text: str) -> tuple[str, dict[str, str]]:
    """Split the search box into full-text words and ``word:value`` filters.

    ``source:aider bread`` -> ("bread", {"source": "aider"}); an unknown word before a
    colon (``http://x``) stays text.
    """
    words: list[str] = []
    filters: dict[str, str] = {}
    for token in text.split():
        name, sep, value = token.partition(":")
        if sep and value and name.lower() in FILTER_WORDS:
            filters[FILTER_WORDS[name.lower()]] = value
        else:
            words.append(token)
    return " ".join(words), filters


def when(ts: int | float | None) -> str:
    """A Unix time in local time, to the minute."""
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def title_cell(c: dict[str, Any]) -> Text:
    """The display name; else the first user message, in italics, so it reads as a
    stand-in; else ``(no messages)``."""
    name = c.get("display_name")
    if name:
        return Text(name, overflow="ellipsis", no_wrap=True)
    title = c.get("title")
    if title:
        return Text(title, style="italic", overflow="ellipsis", no_wrap=True)
    return Text("(no messages)", style="dim")


def conversation_cells(c: dict[str, Any]) -> tuple[Any, ...]:
    return (when(c.get("updated_at")), title_cell(c), c.get("source") or "–",
            c.get("username") or "–", c.get("key_name") or "–", c.get("model") or "–",
            str(c.get("message_count", 0)), f"{c.get('total_tokens', 0):,}",
            Text(str(c["id"]), style="dim"))


class ConversationsScreen(PaneScreen):
    """Browse, search, open, rename and delete conversations."""

    PANE = "conversations"
    BINDINGS = [
        Binding("slash", "search", "Search", id="conversations-search"),
        Binding("enter", "open", "Open", id="conversations-open", show=True),
        Binding("r", "rename", "Rename", id="conversations-rename"),
        Binding("d", "delete", "Delete", id="conversations-delete"),
        Binding("n", "page(1)", "Next page", id="conversations-next"),
        Binding("p", "page(-1)", "Previous page", id="conversations-previous"),
        Binding("escape", "leave_search", "Back to list", id="conversations-leave",
                show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_text = ""
        self.page_offset = 0
        self.rows: dict[str, dict[str, Any]] = {}
        self.has_more = False
        self.total: int | None = None

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        yield Input(placeholder="Search messages and names; filter with source: user: key: "
                                "model: (/ to focus, escape back to list)", id="search")
        yield DataTable(id="conversations", cursor_type="row", zebra_stripes=True)
        yield Static("", id="conversations-empty", classes="empty")
        yield Static("", id="page-info")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#conversations", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.load()

    def client_replaced(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    # -- loading

    @work(group="load", exclusive=True, exit_on_error=False, description="Conversations")
    async def load(self, delay: float = 0.0) -> None:
        """Read the current page (after ``delay``: a newer keystroke cancels this one)."""
        if delay:
            await asyncio.sleep(delay)
        words, filters = parse_search(self.query_text)
        page = await self.client.conversations(q=words or None, limit=PAGE_SIZE,
                                               offset=self.page_offset, filters=filters)
        if not page.data and self.page_offset:  # the last page emptied (deletions): step back
            self.page_offset = max(0, self.page_offset - PAGE_SIZE)
            page = await self.client.conversations(q=words or None, limit=PAGE_SIZE,
                                                   offset=self.page_offset, filters=filters)
        self.rows = {str(c["id"]): c for c in page.data}
        self.has_more, self.total = page.has_more, page.total
        table = self.query_one("#conversations", DataTable)
        sync_rows(table, {cid: conversation_cells(c) for cid, c in self.rows.items()},
                  ordered=True)
        self._show_page_info()

    def _show_page_info(self) -> None:
        empty = self.query_one("#conversations-empty", Static)
        empty.display = not self.rows
        empty.update(f"No conversation matches “{self.query_text}”." if self.query_text
                     else "No conversations yet. Chats from pane 4 and from API clients "
                          "appear here.")
        self.query_one("#conversations").display = bool(self.rows)
        if not self.rows:
            self.query_one("#page-info", Static).update("")
            return
        first, last = self.page_offset + 1, self.page_offset + len(self.rows)
        of = f" of {self.total:,}" if self.total is not None else ""
        pages = ""
        if self.total:
            pages = f"Page {self.page_offset // PAGE_SIZE + 1} of {-(-self.total // PAGE_SIZE)} · "
        search = f" · search “{self.query_text}”" if self.query_text else ""
        self.query_one("#page-info", Static).update(
            f"{pages}{first:,}–{last:,}{of} · newest first{search}")

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.page_offset = 0
        self.load(SEARCH_DELAY)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#conversations", DataTable).focus()

    # -- actions

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_leave_search(self) -> None:
        self.query_one("#conversations", DataTable).focus()

    def action_page(self, step: int) -> None:
        if step > 0 and not self.has_more:
            self.notify("This is the last page.", title="Conversations", timeout=2)
            return
        if step < 0 and self.page_offset == 0:
            return
        self.page_offset = max(0, self.page_offset + step * PAGE_SIZE)
        self.load()

    def selected(self) -> dict[str, Any] | None:
        key = selected_key(self.query_one("#conversations", DataTable))
        return None if key is None else self.rows.get(key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        conv = self.selected()
        if conv is not None:
            self.app.push_screen(ConversationScreen(str(conv["id"])))

    def action_rename(self) -> None:
        conv = self.selected()
        if conv is None:
            return

        def named(name: str | None) -> None:
            if name is not None:
                self.rename(str(conv["id"]), name.strip() or None)

        self.app.push_screen(PromptScreen(f"Rename {conv['id']}",
                                          "An empty name clears it.",
                                          value=conv.get("display_name") or ""), named)

    @work(group="edit", exit_on_error=False, description="Rename")
    async def rename(self, conversation_id: str, name: str | None) -> None:
        await self.client.rename_conversation(conversation_id, name)
        self.notify(f"Renamed {conversation_id}.", title="Conversations", timeout=3)
        self.load()

    def action_delete(self) -> None:
        conv = self.selected()
        if conv is None:
            return
        label = conv.get("display_name") or conv["id"]

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(str(conv["id"]))

        self.app.push_screen(ConfirmScreen(
            f"Delete “{label}”?",
            f"{conv.get('message_count', 0)} messages and their images are deleted for good. "
            "Usage statistics stay.", yes="Delete"), answered)

    @work(group="edit", exit_on_error=False, description="Delete")
    async def delete(self, conversation_id: str) -> None:
        await self.client.delete_conversation(conversation_id)
        self.notify(f"Deleted {conversation_id}.", title="Conversations", timeout=3)
        self.load()
