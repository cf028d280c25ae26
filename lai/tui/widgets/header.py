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
    """

    def __init__(self, active: str, mode: str, location: str) -> None:
        super().__init__()
        self.active = active
        self.mode = mode
        self.location = location

    def compose(self) -> ComposeResult:
        where = Text.assemble(
            (" lai ", "bold reverse"), "  ",
            (self.mode, "bold green" if self.mode == "attached" else "bold cyan"),
            "  ", (self.location, "dim"), overflow="ellipsis", no_wrap=True,
        )
        tabs = Text(no_wrap=True)
        for number, (pane, title) in enumerate(PANES, start=1):
            tabs.append(f" {number} {title} ", style="bold reverse" if pane == self.active else "")
            tabs.append(" ")
        yield Static(where, id="where")
        yield Static(tabs, id="tabs")
