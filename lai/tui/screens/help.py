"""``?``: every binding of every pane, and the app's own."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSection = tuple[str, Sequence[tuple[str, str]]]
KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc"}


class HelpScreen(ModalScreen[None]):
    """A table of keys per pane; escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help-close")]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for title, keys in self.sections:
            table.add_row(Text(title, style="bold underline"), "")
            for key, description in keys:
                table.add_row(key, description)
            table.add_row("", "")
        with VerticalScroll(classes="dialog help"):
            yield Static("Keys", classes="dialog-title")
            yield Static(table)
            yield Static("escape closes · ctrl+p opens the command palette",
                         classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


def binding_rows(bindings: Sequence[Binding | tuple[str, ...]]) -> list[tuple[str, str]]:
    """(keys, description) for each binding that has a description."""
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            keys = ", ".join(KEY_NAMES.get(k, k) for k in b.key.split(","))
            rows.append((keys, b.description))
    return rows
