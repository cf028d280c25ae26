"""Ask for one line of text. Dismisses with the text, or None on escape."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static


class PromptScreen(ModalScreen[str | None]):
    """A titled input; enter accepts, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt-cancel")]

    def __init__(
        self, title: str, body: str = "", *, value: str = "", placeholder: str = "",
        suggester: Suggester | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.value = value
        self.placeholder = placeholder
        self.suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            if self.body_text:
                yield Static(self.body_text, classes="dialog-body")
            yield Input(self.value, placeholder=self.placeholder, suggester=self.suggester,
                        id="prompt-input")
            yield Static("enter accept · escape cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
