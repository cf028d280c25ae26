"""The one time a key is shown in full."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class KeyCreatedScreen(ModalScreen[None]):
    """Shows the new key once; after this only its prefix is ever shown."""

    BINDINGS = [Binding("escape,enter", "close", "Done", id="key-created-close")]

    def __init__(self, name: str, secret: str, *, rotated_from: str | None = None) -> None:
        super().__init__()
        self.key_name = name
        self.secret = secret
        self.rotated_from = rotated_from

    def compose(self) -> ComposeResult:
        what = (f"New key for “{self.key_name}” (replaces {self.rotated_from})"
                if self.rotated_from else f"Key “{self.key_name}” created")
        with Vertical(classes="dialog key-created"):
            yield Static(what, classes="dialog-title")
            yield Static(Text("Copy it now: it is shown this once and never again. "
                              "lai keeps only its hash and its prefix.", style="bold yellow"))
            yield Static(Text(self.secret, style="bold"), id="secret")
            yield Button("I have copied it", variant="primary", id="done")

    def on_mount(self) -> None:
        self.query_one("#done", Button).focus()

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
