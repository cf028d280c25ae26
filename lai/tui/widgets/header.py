"""The top line: where the data comes from (attached or embedded) and the five panes."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

PANES = (("board", "Board"), ("conversations", "Conversations"), ("keys", "Keys"),
         ("chat", "Chat"), ("usage", "Usage"))


class PaneHeader(Horizontal):
    """``lai  attached /srv/lai/data/lai.sock          1 Board  2 Conversations ...``"""

    DEFAULT_CSS = """
    PaneHeader { height: 1; background: $panel; }
    PaneHeader #where { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    PaneHeader #tabs { width: auto; height: 1; }
    PaneHeader #badge { width: auto; height: 1; padding: 0 1; background: $error;
                        color: $text; text-style: bold; display: none; }
    """

    def __init__(self, active: str, mode: str, location: str) -> None:
        super().__init__()
        self.active = active
        self.mode = mode
        self.location = location

    def _where(self) -> Text:
        return Text.assemble(
            (" lai ", "bold reverse"), "  ",
            (self.mode, "bold green" if self.mode == "attached" else "bold cyan"),
            "  ", (self.location, "dim"), overflow="ellipsis", no_wrap=True,
        )

    def set_where(self, mode: str, location: str) -> None:
        """Another client now (an embedded TUI that attached to a proxy)."""
        self.mode, self.location = mode, location
        self.query_one("#where", Static).update(self._where())

    def compose(self) -> ComposeResult:
        where = self._where()
        tabs = Text(no_wrap=True)
        for number, (pane, title) in enumerate(PANES, start=1):
            tabs.append(f" {number} {title} ", style="bold reverse" if pane == self.active else "")
            tabs.append(" ")
        yield Static(where, id="where")
        yield Static("", id="badge")
        yield Static(tabs, id="tabs")

    def set_badge(self, text: str | None) -> None:
        """A warning beside the location (``disconnected since 12:03:04``), or none."""
        badge = self.query_one("#badge", Static)
        badge.display = bool(text)
        badge.update(text or "")
