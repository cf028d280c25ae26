"""One conversation: its messages with provider, model, tokens and time, and its images;
``c`` continues it in the chat pane, ``x`` exports it to a Markdown or JSON file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from lai.tui.export import export_conversation
from lai.tui.notify import notify_error
from lai.tui.screens.prompt import PromptScreen
from lai.tui.widgets.chat import AttachPathSuggester

if TYPE_CHECKING:
    from lai.tui.client import LaiClient

ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta",
              "tool": "bold yellow"}


def clock_time(ts: int | float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def message_block(msg: dict[str, Any], image_path: Callable[[Any], str]) -> Group:
    """A message's head line (role, who answered, tokens, time), its text and images."""
    role = str(msg.get("role") or "?")
    head = Text(role, style=ROLE_STYLE.get(role, "bold"))
    details = []
    if msg.get("provider") or msg.get("model"):
        details.append(f"{msg.get('provider') or '?'} · {msg.get('model') or '?'}")
    if msg.get("tokens") is not None:
        details.append(f"{msg['tokens']} tokens")
    details.append(clock_time(msg.get("created_at")))
    head.append("  " + " · ".join(d for d in details if d), style="dim")
    parts: list[Any] = [head]
    content = msg.get("content")
    if content:
        parts.append(Text(str(content)))
    elif msg.get("tool_calls"):
        parts.append(Text(f"(tool calls: {len(msg['tool_calls'])})", style="dim"))
    elif msg.get("content_removed_at") is not None:
        parts.append(Text("(text removed: server.content_retention_days)", style="dim"))
    for ref in msg.get("image_refs") or ():
        parts.append(Text(f"image: {image_path(ref)}", style="dim"))
    return Group(*parts)


class ConversationScreen(Screen[None]):
    """One conversation; escape goes back to the list, ``c`` continues it in the chat
    pane, ``x`` exports it."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="conversation-back"),
        Binding("c", "continue_chat", "Continue in chat", id="conversation-continue"),
        Binding("x", "export", "Export (.md/.json)", id="conversation-export"),
    ]

    def __init__(self, conversation_id: str) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.conv: dict[str, Any] | None = None

    @property
    def client(self) -> LaiClient:
        return self.app.client  # type: ignore[attr-defined,no-any-return]

    def compose(self) -> ComposeResult:
        yield Static(Text(f" {self.conversation_id}", style="bold"), id="conversation-title")
        yield VerticalScroll(Static("Loading…", classes="empty"), id="messages")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, exit_on_error=False, description="Conversation")
    async def load(self) -> None:
        conv = await self.client.conversation(self.conversation_id)
        self.conv = conv
        title = Text(f" {conv.get('display_name') or conv.get('title') or conv['id']}",
                     style="bold")
        title.append(f"  {conv['id']} · {conv.get('source') or '–'} · "
                     f"{conv.get('message_count', 0)} messages · "
                     f"{conv.get('total_tokens', 0):,} tokens", style="dim")
        self.query_one("#conversation-title", Static).update(title)
        box = self.query_one("#messages", VerticalScroll)
        await box.remove_children()
        messages = conv.get("messages") or []
        if not messages:
            await box.mount(Static("This conversation has no messages.", classes="empty"))
        await box.mount_all(Static(message_block(m, self.client.image_path),
                                    classes="message") for m in messages)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            notify_error(self, event.worker.error, "Conversation")

    def action_back(self) -> None:
        self.dismiss(None)

    def action_continue_chat(self) -> None:
        if self.conv is None:
            return
        conv = self.conv
        self.dismiss(None)
        self.app.continue_conversation(conv)  # type: ignore[attr-defined]

    def action_export(self) -> None:
        if self.conv is None:
            return
        conv = self.conv

        def chosen(path: str | None) -> None:
            if path and path.strip():
                self.export(conv, path.strip())

        self.app.push_screen(PromptScreen(
            "Export this conversation", "A path ending in .md (Markdown) or .json "
            "(the API's JSON); → completes paths; an existing file is not overwritten.",
            value=f"./{conv['id']}.md", suggester=AttachPathSuggester(command=None)), chosen)

    @work(group="export", exit_on_error=False, description="Export")
    async def export(self, conv: dict[str, Any], path: str) -> None:
        try:
            written = await asyncio.to_thread(export_conversation, conv, path,
                                              self.client.image_path)
        except (ValueError, OSError) as exc:
            text = (f"{exc.filename} exists already; pick another name."
                    if isinstance(exc, FileExistsError) else str(exc))
            self.notify(text, title="Export", severity="error")
            return
        self.notify(f"Wrote {len(conv.get('messages') or ())} messages to {written}.",
                    title="Export")
