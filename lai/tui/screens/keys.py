"""Pane 3, keys: the table of ``lai keys list``; new, rotate, revoke/enable, delete.

After creation nothing about a key but its prefix is ever shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from lai.tui.screens.base import PaneScreen
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.key_created import KeyCreatedScreen
from lai.tui.screens.key_form import KeyFormScreen, KeyRequest
from lai.tui.screens.prompt import PromptScreen
from lai.tui.widgets.header import PaneHeader
from lai.tui.widgets.tables import selected_key, sync_rows

COLUMNS = (("name", "Name"), ("prefix", "Prefix"), ("status", "Status"),
           ("scopes", "Scopes"), ("priority", "Priority"), ("created", "Created"),
           ("used", "Last used"), ("expires", "Expires"), ("rotation", "Rotation"))
STATUS_STYLE = {"active": "green", "grace": "yellow", "revoked": "red", "expired": "dim",
                "rotated": "dim"}
DEFAULT_GRACE = "24h"


def iso_local(value: str | None, empty: str = "–") -> str:
    """An ISO 8601 time from the store in local time, to the minute."""
    if not value:
        return empty
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M")


def key_cells(k: dict[str, Any]) -> tuple[Any, ...]:
    rotation = ""
    if k.get("replaced_by"):
        rotation = f"→ {k['replaced_by']}"
    elif k.get("rotated_from"):
        rotation = f"← {k['rotated_from']}"
    status = k["status"]
    if status == "grace":
        status = f"grace until {iso_local(k.get('grace_until'))}"
    return (k["name"], k["prefix"] + "…",
            Text(status, style=STATUS_STYLE.get(k["status"], "")),
            ", ".join(k.get("scopes") or ()) or "–", str(k.get("priority", 1)),
            iso_local(k.get("created_at"))[:10], iso_local(k.get("last_used_at"), "never"),
            iso_local(k.get("expires_at"), "never"), rotation)


class KeysScreen(PaneScreen):
    """Key administration, every change confirmed first."""

    PANE = "keys"
    BINDINGS = [
        Binding("n", "new_key", "New key", id="keys-new"),
        Binding("r", "rotate_key", "Rotate", id="keys-rotate"),
        Binding("x", "toggle_key", "Revoke/enable", id="keys-toggle"),
        Binding("d", "delete_key", "Delete", id="keys-delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        yield Static("API keys", classes="section-title")
        yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        yield Static("No API keys yet. Press n to create one.", id="keys-empty",
                     classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.query_one("#keys-empty").display = False  # until the first answer
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    @work(group="load", exclusive=True, exit_on_error=False, description="Keys")
    async def load(self) -> None:
        keys = await self.client.keys()
        self.rows = {str(k["id"]): k for k in keys}
        sync_rows(self.query_one("#keys", DataTable),
                  {kid: key_cells(k) for kid, k in self.rows.items()}, ordered=True)
        self.query_one("#keys").display = bool(self.rows)
        self.query_one("#keys-empty").display = not self.rows

    def selected(self) -> dict[str, Any] | None:
        kid = selected_key(self.query_one("#keys", DataTable))
        return None if kid is None else self.rows.get(kid)

    # -- new

    def action_new_key(self) -> None:
        def submitted(request: KeyRequest | None) -> None:
            if request is not None:
                self.create(request)

        self.app.push_screen(KeyFormScreen(), submitted)

    @work(group="edit", exit_on_error=False, description="New key")
    async def create(self, request: KeyRequest) -> None:
        made = await self.client.create_key(request.name, expires=request.expires,
                                            scopes=request.scopes, priority=request.priority)
        self.load()
        await self.app.push_screen_wait(KeyCreatedScreen(request.name, made.secret))

    # -- rotate

    def action_rotate_key(self) -> None:
        key = self.selected()
        if key is None:
            return

        def grace_given(grace: str | None) -> None:
            if grace is not None:
                self.rotate(key, grace.strip() or DEFAULT_GRACE)

        self.app.push_screen(PromptScreen(
            f"Rotate “{key['name']}” ({key['prefix']}…)",
            "A new key replaces it. How long should the old key keep working? "
            "(e.g. 24h, 7d, 0s for not at all)", value=DEFAULT_GRACE), grace_given)

    @work(group="edit", exit_on_error=False, description="Rotate key")
    async def rotate(self, key: dict[str, Any], grace: str) -> None:
        confirmed = await self.app.push_screen_wait(ConfirmScreen(
            f"Rotate “{key['name']}”?",
            f"{key['prefix']}… keeps working for {grace}, then stops.", yes="Rotate"))
        if not confirmed:
            return
        made = await self.client.rotate_key(key["prefix"], grace=grace)
        self.load()
        await self.app.push_screen_wait(
            KeyCreatedScreen(key["name"], made.secret, rotated_from=key["prefix"] + "…"))

    # -- revoke / enable

    def action_toggle_key(self) -> None:
        key = self.selected()
        if key is None:
            return
        enable = not key["enabled"]
        verb = "Enable" if enable else "Revoke"
        body = (f"{key['prefix']}… will authenticate again (expiry and grace still apply)."
                if enable else f"Requests with {key['prefix']}… are refused from now on "
                               "(a running proxy notices within seconds).")

        def answered(yes: bool | None) -> None:
            if yes:
                self.toggle(key, enable)

        self.app.push_screen(ConfirmScreen(f"{verb} “{key['name']}”?", body, yes=verb),
                             answered)

    @work(group="edit", exit_on_error=False, description="Revoke/enable key")
    async def toggle(self, key: dict[str, Any], enable: bool) -> None:
        await self.client.set_key_enabled(key["prefix"], enable)
        self.notify(f"{key['name']} ({key['prefix']}…) "
                    f"{'enabled' if enable else 'revoked'}.", title="Keys", timeout=3)
        self.load()

    # -- delete

    def action_delete_key(self) -> None:
        key = self.selected()
        if key is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(key)

        self.app.push_screen(ConfirmScreen(
            f"Delete “{key['name']}” ({key['prefix']}…)?",
            "The key stops working and its row is gone for good; usage statistics keep "
            "its name.", yes="Delete"), answered)

    @work(group="edit", exit_on_error=False, description="Delete key")
    async def delete(self, key: dict[str, Any]) -> None:
        await self.client.delete_key(key["prefix"])
        self.notify(f"Deleted {key['name']} ({key['prefix']}…).", title="Keys", timeout=3)
        self.load()
