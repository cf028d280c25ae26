"""The chat transcript's pieces: a user's message and a streamed answer with its meta line."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.suggester import Suggester
from textual.widgets import Markdown, Static

from lai.tui.paths import complete_path


class UserMessage(Static):
    """What the operator sent, with the images that went with it."""

    def __init__(self, text: str, attachments: list[str]) -> None:
        body = Text(text or "(image only)")
        for path in attachments:
            body.append(f"\nimage: {path}", style="dim")
        super().__init__(body, classes="user-message")


class AnswerView(Vertical):
    """An answer: Markdown streamed token by token, then provider, model, tokens, time.

    ``text`` and ``meta`` show an answer already given (a continued conversation)."""

    def __init__(self, text: str = "", meta: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = text
        self._meta = meta

    def compose(self) -> ComposeResult:
        yield Markdown(self._text, classes="answer-text")
        meta = (Text("waiting for a provider…", style="dim italic") if self._meta is None
                else Text(self._meta, style="dim"))
        yield Static(meta, classes="answer-meta")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_meta(self, text: str, *, style: str = "dim") -> None:
        self.query_one(".answer-meta", Static).update(Text(text, style=style))


class AttachPathSuggester(Suggester):
    """Completes the path in ``/attach PATH`` (or a bare path, for the attach dialog)."""

    def __init__(self, *, command: str | None = "/attach ") -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.command = command

    async def get_suggestion(self, value: str) -> str | None:
        prefix = ""
        if self.command is not None:
            if not value.startswith(self.command):
                return None
            prefix, value = self.command, value[len(self.command):]
        completed = complete_path(value)
        return None if completed is None else prefix + completed
