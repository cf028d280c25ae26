"""One conversation: its messages with provider, model, tokens and time, and its images."""

from __future__ import annotations

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

from lai.tui.notify import notify_error

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
    """Read-only view of one conversation; escape goes back to the list."""

    BINDINGS = [Binding("escape,q", "back", "Back", id="conversation-back")]

    def __init__(self, conversation_id: str) -> None:
        super().__init__()
        self.conversation_id = conversation_id

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
        title = Text(f" {conv.get('display_name') or conv['id']}", style="bold")
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
