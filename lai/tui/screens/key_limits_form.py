"""The limits form of a key: in flight, queued, rpm, tpm and a budget per day, week and
month, saved as ``lai keys update`` saves them.

The values are checked by the client with the parsers of ``lai keys update``; a bad one
is an error notification, the form stays open with what was typed, and nothing is
stored.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from lai.tui.client import ClientError, LaiClient, LimitsEdit
from lai.tui.notify import error_text
from lai.tui.screens.form import FormScreen

LIMIT_FIELDS = (("max_concurrent", "In flight at most"), ("max_queued", "Queued at most"),
                ("rpm", "Requests per minute"), ("tpm", "Tokens per minute"))
BUDGET_FIELDS = (("day", "USD per UTC day"), ("week", "USD per week (from Monday)"),
                 ("month", "USD per calendar month"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


class KeyLimitsFormScreen(FormScreen[list[dict[str, Any]]]):
    """Edit the limits of ``key`` (a keys-pane dict) and every key of its name. Dismisses
    with the keys as stored after the change, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="limits-form-cancel"),
        Binding("ctrl+s", "submit", "Save", id="limits-form-save"),
    ]

    def __init__(self, key: dict[str, Any], client: LaiClient) -> None:
        super().__init__()
        self.key = key
        self.client = client
        limits = key.get("limits") or {}
        budgets = limits.get("budgets") or {}
        self.before = {name: _text(limits.get(name)) for name, _ in LIMIT_FIELDS}
        self.before.update({period: _text(budgets.get(period)) for period, _ in BUDGET_FIELDS})

    def compose(self) -> ComposeResult:
        k = self.key
        with Vertical(classes="dialog key-form limits-form"):
            yield Static(f"Limits of “{k['name']}” ({k['prefix']}…)", classes="dialog-title")
            with Horizontal(classes="limits-columns"):
                with Vertical(classes="limits-column"):
                    for name, label in LIMIT_FIELDS:
                        yield Label(label)
                        yield Input(self.before[name], placeholder="no limit",
                                    id=f"limit-{name}")
                with Vertical(classes="limits-column"):
                    for period, label in BUDGET_FIELDS:
                        yield Label(label)
                        yield Input(self.before[period], placeholder="no budget",
                                    id=f"budget-{period}")
            yield from self.buttons()
            yield Static("Empty means no limit. Saved like `lai keys update`, for every key "
                         "of this name; a running proxy applies it within 5 s.",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#limit-max_concurrent", Input).focus()

    def edit(self) -> LimitsEdit:
        """The fields whose text changed."""
        now = {name: self.query_one(f"#limit-{name}", Input).value.strip()
               for name, _ in LIMIT_FIELDS}
        now.update({period: self.query_one(f"#budget-{period}", Input).value.strip()
                    for period, _ in BUDGET_FIELDS})
        changed = {name: text for name, text in now.items() if text != self.before[name]}
        return LimitsEdit(
            limits={n: t for n, t in changed.items() if n in dict(LIMIT_FIELDS)},
            budgets={p: t for p, t in changed.items() if p in dict(BUDGET_FIELDS)})

    def action_submit(self) -> None:
        edit = self.edit()
        if not edit.limits and not edit.budgets:
            self.notify("Nothing changed.", title="Key limits", timeout=3)
            self.dismiss(None)
            return
        self.save(edit)

    @work(group="save", exclusive=True, exit_on_error=False, description="Key limits")
    async def save(self, edit: LimitsEdit) -> None:
        try:
            records = await self.client.update_key_limits(self.key["name"], edit)
        except ClientError as exc:
            # The form stays open with what was typed; the store has not changed. Every
            # try is answered (notify_error would hold back a repeated message).
            self.notify(error_text(exc), title="Key limits", severity="error", timeout=8)
            return
        self.dismiss(records)
