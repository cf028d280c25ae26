"""Asking how to change a provider: enable/disable now or also in the config file, and
the small form that edits ``enabled``, ``priority`` and ``max_concurrent``."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from lai.engine.types import ProviderSnapshot
from lai.tui.screens.form import FormScreen


class ToggleScreen(ModalScreen[str | None]):
    """Dismisses with ``"now"`` (this run only), ``"save"`` (this run and the config
    file) or None (cancel)."""

    BINDINGS = [
        Binding("y", "answer('now')", "This run only", id="toggle-now"),
        Binding("s", "answer('save')", "And save in the config", id="toggle-save"),
        Binding("n,escape", "answer('')", "Cancel", id="toggle-cancel"),
    ]

    def __init__(self, title: str, body: str, verb: str) -> None:
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.body_text, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.verb} now (y)", variant="warning", id="now")
                yield Button(f"{self.verb} and save (s)", variant="error", id="save")
                yield Button("Cancel (n)", id="cancel")
            yield Static("“now” lasts until lai restarts; “save” also writes `enabled` in "
                         "the config file, keeping its comments.", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id if event.button.id in ("now", "save") else "")

    def action_answer(self, choice: str) -> None:
        self.dismiss(choice or None)


@dataclass(frozen=True, slots=True)
class ProviderEdit:
    """What the form saves: only the fields that changed."""

    provider_id: str
    values: dict[str, object]


class ProviderFormScreen(FormScreen[ProviderEdit]):
    """Edit a provider's ``enabled``, ``priority`` and ``max_concurrent``; the file
    validates the values when it is written."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="provider-form-cancel"),
        Binding("ctrl+s", "submit", "Save", id="provider-form-save"),
    ]

    def __init__(self, provider: ProviderSnapshot) -> None:
        super().__init__()
        self.provider = provider

    def compose(self) -> ComposeResult:
        p = self.provider
        with Vertical(classes="dialog key-form"):
            yield Static(f"Edit {p.name} ({p.id}) in the config file", classes="dialog-title")
            yield Checkbox("enabled", value=p.enabled, id="provider-enabled")
            yield Label("priority (lower is preferred)")
            yield Input(str(p.priority), id="provider-priority", type="integer")
            yield Label("max_concurrent (requests in flight at most)")
            yield Input(str(p.max_concurrent), id="provider-max", type="integer")
            yield from self.buttons()
            yield Static("Saved to the config file with its comments kept, then the "
                         "config is reloaded, so the values apply at once.",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#provider-priority", Input).focus()

    def action_submit(self) -> None:
        p = self.provider
        values: dict[str, object] = {}
        enabled = self.query_one("#provider-enabled", Checkbox).value
        if enabled != p.enabled:
            values["enabled"] = enabled
        for field, widget_id, old in (("priority", "#provider-priority", p.priority),
                                      ("max_concurrent", "#provider-max", p.max_concurrent)):
            text = self.query_one(widget_id, Input).value.strip()
            try:
                number = int(text)
            except ValueError:
                self.notify(f"{field} must be a whole number.", title="Provider",
                            severity="warning")
                self.query_one(widget_id, Input).focus()
                return
            if number != old:
                values[field] = number
        self.dismiss(ProviderEdit(p.id, values))
