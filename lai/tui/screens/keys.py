"""Pane 3, keys: the table of ``lai keys list``; new, rotate, revoke/enable, delete, and
the limits form (``lai keys update``).

After creation nothing about a key but its prefix is ever shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from lai.engine.quota import KeyQuota
from lai.tui.screens.base import PaneScreen
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.key_created import KeyCreatedScreen
from lai.tui.screens.key_form import KeyFormScreen, KeyRequest
from lai.tui.screens.key_limits_form import KeyLimitsFormScreen
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


def relative(value: str | None, now: float) -> str:
    """``in 3 h``, ``in 12 d``, ``5 min ago``: how far an ISO time is from ``now``."""
    if not value:
        return ""
    seconds = datetime.fromisoformat(value).timestamp() - now
    size = abs(seconds)
    if size < 60:
        amount = f"{size:.0f} s"
    elif size < 3600:
        amount = f"{size // 60:.0f} min"
    elif size < 2 * 86400:
        amount = f"{size / 3600:.0f} h"
    else:
        amount = f"{size / 86400:.0f} d"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def key_cells(k: dict[str, Any], now: float) -> tuple[Any, ...]:
    rotation = ""
    if k.get("replaced_by"):
        rotation = f"→ {k['replaced_by']}"
    elif k.get("rotated_from"):
        rotation = f"← {k['rotated_from']}"
    status = k["status"]
    if status == "grace":
        status = f"grace ends {relative(k.get('grace_until'), now)}"
    expires = iso_local(k.get("expires_at"), "never")
    if k.get("expires_at"):
        expires = f"{relative(k['expires_at'], now)} ({expires[:10]})"
    used = relative(k.get("last_used_at"), now) or "never"
    return (k["name"], k["prefix"] + "…",
            Text(status, style=STATUS_STYLE.get(k["status"], "")),
            ", ".join(k.get("scopes") or ()) or "–", str(k.get("priority", 1)),
            iso_local(k.get("created_at"))[:10], used, expires, rotation)


def limits_text(k: dict[str, Any]) -> str:
    """``≤2 in flight · 12/60 rpm · $1.20/$5.00 day``: the key's limits and their use."""
    limits = k.get("limits") or {}
    parts = []
    if limits.get("max_concurrent") is not None:
        parts.append(f"≤{limits['max_concurrent']} in flight")
    if limits.get("max_queued") is not None:
        parts.append(f"≤{limits['max_queued']} queued")
    used = {u["limit"]: u["used"] for u in k.get("usage") or ()}
    for name in ("rpm", "tpm"):
        if limits.get(name) is not None:
            parts.append(f"{used.get(name, 0):g}/{limits[name]} {name}")
    for period, usd in (limits.get("budgets") or {}).items():
        parts.append(f"${used.get(period, 0.0):.2f}/${usd:.2f} {period}")
    return " · ".join(parts) or "–"


def quota_of(k: dict[str, Any]) -> KeyQuota:
    """The limits of a key dict (``lai keys list --json``'s ``limits``)."""
    limits = k.get("limits") or {}
    return KeyQuota(limits.get("max_concurrent"), limits.get("max_queued"),
                    limits.get("rpm"), limits.get("tpm")).with_budgets(
        limits.get("budgets") or {})


def matches(k: dict[str, Any], needle: str) -> bool:
    """The filter box: a case-insensitive substring of name, prefix, status or scopes."""
    if not needle:
        return True
    hay = " ".join([k["name"], k["prefix"], k["status"], *(k.get("scopes") or ())]).lower()
    return needle.lower() in hay


class KeysScreen(PaneScreen):
    """Key administration, every change confirmed first."""

    PANE = "keys"
    BINDINGS = [
        Binding("n", "new_key", "New key", id="keys-new"),
        Binding("r", "rotate_key", "Rotate", id="keys-rotate"),
        Binding("x", "toggle_key", "Revoke/enable", id="keys-toggle"),
        Binding("d", "delete_key", "Delete", id="keys-delete"),
        Binding("l", "edit_limits", "Limits", id="keys-limits"),
        Binding("slash", "filter", "Filter", id="keys-filter"),
        Binding("escape", "leave_filter", "Back to table", id="keys-leave", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.all_keys: list[dict[str, Any]] = []
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        yield Static("API keys", id="keys-title", classes="section-title")
        yield Input(placeholder="Filter by name, prefix, status or scope (escape: back)",
                    id="keys-filter")
        yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        yield Static("", id="keys-detail", classes="detail")
        yield Static("No API keys yet. Press n to create one.", id="keys-empty",
                     classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.query_one("#keys-empty").display = False  # until the first answer
        self.query_one("#keys-filter").display = False
        self.load()

    def client_replaced(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    @work(group="load", exclusive=True, exit_on_error=False, description="Keys")
    async def load(self) -> None:
        self.all_keys = await self.client.keys()
        self.show()

    def show(self) -> None:
        now = self.now()
        self.rows = {str(k["id"]): k for k in self.all_keys if matches(k, self.needle)}
        sync_rows(self.query_one("#keys", DataTable),
                  {kid: key_cells(k, now) for kid, k in self.rows.items()}, ordered=True)
        table = self.query_one("#keys", DataTable)
        table.display = bool(self.rows)
        box = self.query_one("#keys-filter", Input)
        if self.rows and not (box.display and box.has_focus):
            # Focus may have fallen elsewhere while the table was hidden (no keys yet).
            table.focus()
        self._show_detail()
        empty = self.query_one("#keys-empty", Static)
        empty.display = not self.rows
        empty.update(f"No key matches “{self.needle}”." if self.needle and self.all_keys
                     else "No API keys yet. Press n to create one.")
        shown = (f"{len(self.rows)} of {len(self.all_keys)}" if self.needle
                 else str(len(self.all_keys)))
        self.query_one("#keys-title", Static).update(
            f"API keys ({shown})" + (f" · filter “{self.needle}”" if self.needle else ""))

    # -- filter

    def action_filter(self) -> None:
        box = self.query_one("#keys-filter", Input)
        box.display = True
        box.focus()

    def action_leave_filter(self) -> None:
        box = self.query_one("#keys-filter", Input)
        if not box.value:
            box.display = False
        self.query_one("#keys", DataTable).focus()

    @on(Input.Changed, "#keys-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self.show()

    @on(Input.Submitted, "#keys-filter")
    def _filter_submitted(self) -> None:
        self.action_leave_filter()

    @on(DataTable.RowHighlighted, "#keys")
    def _show_detail(self) -> None:
        """The detail line: the selected key's limits and their use now."""
        k = self.selected()
        detail = self.query_one("#keys-detail", Static)
        detail.display = k is not None
        if k is not None:
            detail.update(f"{k['name']} ({k['prefix']}…) limits: {limits_text(k)}")

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

    # -- limits

    def action_edit_limits(self) -> None:
        key = self.selected()
        if key is None:
            return

        def saved(records: list[dict[str, Any]] | None) -> None:
            if records:
                limits = quota_of(records[-1]).describe()
                self.notify(f"{key['name']}: limits {limits}. A running proxy applies them "
                            "within 5 s.", title="Key limits", timeout=5)
                self.load()

        self.app.push_screen(KeyLimitsFormScreen(key, self.client), saved)
