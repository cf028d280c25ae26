"""The new-key form: name, expiry, scope and queue priority."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Checkbox, Input, Label, RadioButton, RadioSet, Static

from lai.tui.screens.form import FormScreen


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """What the form asks the client to create."""

    name: str
    expires: str | None
    scopes: list[str]
    priority: int | None
    """0 or 1; None lets the store decide (0 for names starting agent-, else 1)."""


class KeyFormScreen(FormScreen[KeyRequest]):
    """Dismisses with a KeyRequest, or None when cancelled. Values are checked by the
    store when the key is made; the form only requires a name."""

    SUBMIT_LABEL = "Create (ctrl+s)"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="key-form-cancel"),
        Binding("ctrl+s", "submit", "Create", id="key-form-create"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog key-form"):
            yield Static("New API key", classes="dialog-title")
            yield Label("Name (e.g. laptop, agent-ci)")
            yield Input(placeholder="name", id="key-name")
            yield Label("Expires after (e.g. 30d, 24h, 2w; empty: never)")
            yield Input(placeholder="never", id="key-expires")
            yield Checkbox("admin scope (the /admin endpoints over TCP)", id="key-admin")
            yield Label("Queue priority")
            with RadioSet(id="key-priority"):
                yield RadioButton("automatic · 0 for agent-* names, else 1", value=True,
                                  id="priority-auto")
                yield RadioButton("1 · normal", id="priority-1")
                yield RadioButton("0 · first in the queue (agents)", id="priority-0")
            yield from self.buttons()

    def on_mount(self) -> None:
        self.query_one("#key-name", Input).focus()

    def action_submit(self) -> None:
        name = self.query_one("#key-name", Input).value.strip()
        if not name:
            self.notify("A key needs a name.", title="New key", severity="warning")
            self.query_one("#key-name", Input).focus()
            return
        expires = self.query_one("#key-expires", Input).value.strip() or None
        scopes = ["admin"] if self.query_one("#key-admin", Checkbox).value else []
        pressed = self.query_one("#key-priority", RadioSet).pressed_button
        priority = {"priority-0": 0, "priority-1": 1}.get((pressed.id or "") if pressed else "")
        self.dismiss(KeyRequest(name, expires, scopes, priority))
