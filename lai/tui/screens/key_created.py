"""The one time a key is shown in full."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

COPY_HINT = ("c copies it to the clipboard of the terminal you are typing in, over SSH "
             "too (OSC 52: kitty, WezTerm, iTerm2, Windows Terminal, Alacritty, foot; "
             "in tmux set-clipboard on; not macOS Terminal).")


class KeyCreatedScreen(ModalScreen[None]):
    """Shows the new key once; after this only its prefix is ever shown."""

    BINDINGS = [Binding("escape,enter", "close", "Done", id="key-created-close"),
                Binding("c", "copy", "Copy to clipboard", id="key-created-copy")]

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
            with Horizontal(classes="dialog-buttons"):
                yield Button("Copy to my clipboard (c)", id="copy")
                yield Button("I have copied it", variant="primary", id="done")
            yield Static(COPY_HINT, classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#done", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy()
        else:
            self.dismiss(None)

    def action_copy(self) -> None:
        # OSC 52: the terminal in front of the operator sets its clipboard, so this works
        # over SSH; the key never touches the server's own clipboard or disk.
        self.app.copy_to_clipboard(self.secret)
        self.notify("Sent to your terminal's clipboard (OSC 52). If pasting gives nothing, "
                    "your terminal does not allow it: copy the key from the screen.",
                    title="Key", timeout=6)

    def action_close(self) -> None:
        self.dismiss(None)
