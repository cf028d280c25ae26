"""What the TUI's small forms share: a submit and a cancel button, Enter in any field
submits, Escape cancels (the subclass binds ``escape`` to ``cancel`` and its own key to
``submit``, and implements ``action_submit``)."""

from __future__ import annotations

from typing import TypeVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Input

T = TypeVar("T")


class FormScreen(ModalScreen[T | None]):
    SUBMIT_LABEL = "Save (ctrl+s)"

    def buttons(self) -> ComposeResult:
        with Horizontal(classes="dialog-buttons"):
            yield Button(self.SUBMIT_LABEL, variant="primary", id="submit")
            yield Button("Cancel (esc)", id="cancel")

    def action_submit(self) -> None:
        raise NotImplementedError

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_cancel(self) -> None:
        self.dismiss(None)
