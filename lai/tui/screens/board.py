"""Pane 1, the board: providers, request rate and latency, the requests in flight and
waiting, and the last failures.

Events redraw it at once; a one-second poll corrects counts the events cannot know
(queue depths per provider, tokens so far) and fetches the queue and the failure list;
between polls the queue's events move each waiting request up to its new position.
Rows are keyed and only changed cells are updated, so nothing flickers. When the poll
cannot reach the proxy the board goes stale: greyed, a header badge saying since when,
and no live ages, until the proxy answers again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Sparkline, Static

from lai.engine.types import Failure, ProviderSnapshot, Queued
from lai.tui.board_cells import (
    FAILURE_COLUMNS,
    FLIGHT_COLUMNS,
    PROVIDER_COLUMNS,
    QUEUE_COLUMNS,
    SORTS,
    clock,
    duration,
    failure_cells,
    flight_cells,
    flight_matches,
    provider_cells,
    provider_matches,
    queue_cells,
    server_summary,
    sort_providers,
)
from lai.tui.board_state import BUCKET_SECONDS, BUCKETS, BoardState, queue_after
from lai.tui.client import ClientError
from lai.tui.notify import notify_error
from lai.tui.screens.base import PaneScreen
from lai.tui.screens.provider_form import ProviderEdit, ProviderFormScreen, ToggleScreen
from lai.tui.widgets.header import PaneHeader
from lai.tui.widgets.tables import sync_rows

FAILURES_SHOWN = 12
RETRY_SECONDS = 2.0


class BoardScreen(PaneScreen):
    """Live providers and traffic. ``e`` enables/disables, ``c`` checks now."""

    PANE = "board"
    BINDINGS = [
        Binding("e", "toggle_provider", "Enable/disable", id="board-toggle"),
        Binding("c", "check_provider", "Check", id="board-check"),
        Binding("p", "edit_provider", "Edit", id="board-edit"),
        Binding("s", "sort", "Sort", id="board-sort"),
        Binding("R", "reload_config", "Reload config", id="board-reload"),
        Binding("slash", "filter", "Filter", id="board-filter"),
        Binding("escape", "leave_filter", "Back to the board", id="board-leave", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = BoardState()
        self.loaded = False
        self._stream_failed = False
        self.queue: list[Queued] = []
        self.failures: list[Failure] = []
        self.disconnected_since: float | None = None
        """When the poll first failed to reach the proxy; None while it answers."""
        self.sort_by = SORTS[0]
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        yield Input(placeholder="Filter providers, requests and failures (escape: back)",
                    id="board-filter")
        with Vertical(id="board"):
            yield Static("Providers", id="providers-title", classes="section-title")
            yield DataTable(id="providers", cursor_type="row", zebra_stripes=True)
            yield Static("", id="provider-detail")
            with Horizontal(id="sparklines"):
                with Vertical(classes="spark-box"):
                    yield Static("Requests/s · last 5 min", id="rate-title",
                                 classes="spark-title")
                    yield Sparkline([0.0] * BUCKETS, id="rate")
                with Vertical(classes="spark-box"):
                    yield Static("Latency · last 5 min", id="latency-title",
                                 classes="spark-title")
                    yield Sparkline([0.0] * BUCKETS, id="latency")
            with Horizontal(id="lists"):
                with Vertical(id="traffic"):
                    yield Static("In flight", id="flight-title", classes="section-title")
                    yield DataTable(id="flights", cursor_type="row")
                    yield Static("Nothing in flight.", id="flights-empty", classes="empty")
                    yield Static("Queued", id="queue-title", classes="section-title")
                    yield DataTable(id="queue", cursor_type="row")
                    yield Static("Nobody waiting.", id="queue-empty", classes="empty")
                with Vertical(id="failure-box"):
                    yield Static("Recent failures", id="failures-title",
                                 classes="section-title")
                    yield DataTable(id="failures", cursor_type="row")
                    yield Static("No failures since the proxy started.", id="failures-empty",
                                 classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        for table_id, columns in (("#providers", PROVIDER_COLUMNS), ("#flights", FLIGHT_COLUMNS),
                                  ("#queue", QUEUE_COLUMNS), ("#failures", FAILURE_COLUMNS)):
            table = self.query_one(table_id, DataTable)
            for key, label in columns:
                table.add_column(label, key=key)
        self.query_one("#board-filter").display = False
        self.query_one("#providers", DataTable).focus()
        self._show_detail()
        self.poll()
        self.follow_events()
        self.set_interval(1.0, self.poll)

    def client_replaced(self) -> None:
        """Attached now: the proxy's state and events replace the embedded engine's."""
        self.state = BoardState()
        self._stream_failed = False
        if self.disconnected_since is not None:
            self.disconnected_since = None
            self.query_one(PaneHeader).set_badge(None)
            self.query_one("#board").remove_class("stale")
        self.follow_events()  # exclusive: the old stream's worker is cancelled
        self.poll()

    # -- data

    @work(group="poll", exclusive=True, exit_on_error=False, description="Loading providers")
    async def poll(self) -> None:
        """Fresh provider state, the in-flight list (embedded), the queue and failures."""
        try:
            providers = await self.client.providers()
            flights = await self.client.in_flight()
            queue = await self.client.queued()
            failures = await self.client.failures()
        except ClientError as exc:
            self._went_stale(exc)
            return
        if self.disconnected_since is not None:
            self._back_live()
        self.state.set_providers(providers)
        if flights is not None:
            self.state.set_flights(flights)
        self.queue, self.failures = queue, failures
        self.loaded = True
        self.redraw()

    @property
    def stale(self) -> bool:
        return self.disconnected_since is not None

    def _went_stale(self, exc: ClientError) -> None:
        if self.disconnected_since is not None:
            return
        self.disconnected_since = self.now()
        self.query_one(PaneHeader).set_badge(f"disconnected since {clock(self.now())}")
        self.query_one("#board").add_class("stale")
        notify_error(self, exc, "Board")
        self.redraw()

    def _back_live(self) -> None:
        since = self.disconnected_since or self.now()
        self.disconnected_since = None
        self.query_one(PaneHeader).set_badge(None)
        self.query_one("#board").remove_class("stale")
        self.notify(f"Connected again (disconnected from {clock(since)} to "
                    f"{clock(self.now())}).", title="Board")

    @work(group="events", exclusive=True, exit_on_error=False, description="Live events")
    async def follow_events(self) -> None:
        """Apply engine events as they come; reconnect after a broken stream."""
        while True:
            try:
                async for event in self.client.events():
                    if self._stream_failed:
                        self._stream_failed = False
                        self.notify("Live events are back.", title="Live events")
                    if event.get("kind") == "config_reloaded":
                        self._config_reloaded(event)
                    elif event.get("kind") == "queue_changed":
                        self.queue = queue_after(self.queue, event.get("waiting"))
                    self.state.apply(event)
                    self.redraw()
            except ClientError as exc:
                if not self._stream_failed:  # one notification per outage, not per retry
                    self._stream_failed = True
                    notify_error(self, exc, "Live events")
            await asyncio.sleep(RETRY_SECONDS)

    def _config_reloaded(self, event: dict[str, Any]) -> None:
        """Another process (SIGHUP, lai config reload, the file watcher) reloaded."""
        if event.get("ok"):
            for warning in event.get("warnings") or ():
                self.notify(str(warning), title="Config", severity="warning", timeout=8)
            self.poll()
        else:
            self.notify(f"Refused, the old config keeps serving: {event.get('error')}",
                        title="Config reload", severity="error", timeout=10)

    # -- drawing

    def redraw(self) -> None:
        now = self.now()
        stale = self.stale
        needle = self.needle
        providers = [p for p in sort_providers(list(self.state.providers.values()), self.sort_by)
                     if not needle or provider_matches(p, needle)]
        table = self.query_one("#providers", DataTable)
        sync_rows(table, {p.id: provider_cells(p, now, stale=stale) for p in providers},
                  ordered=True)
        filtered = f" · filter “{needle}”" if needle else ""
        self.query_one("#providers-title", Static).update(
            f"Providers · sorted by {self.sort_by}{filtered}")
        shown = [f for f in self.state.flights.values() if not needle or flight_matches(f, needle)]
        self._fill("flights", {f.request_id: flight_cells(f, now, stale=stale) for f in shown},
                   f"In flight ({len(shown)})")
        queue = [q for q in self.queue if not needle or needle.lower() in
                 f"{q.key_name or ''} {q.model}".lower()]
        self._fill("queue", {q.request_id: queue_cells(q, stale=stale) for q in queue},
                   f"Queued ({len(queue)})")
        failures = [f for f in self.failures if not needle or needle.lower() in
                    f"{f.provider_id or ''} {f.key_name or ''} {f.model} {f.reason}".lower()]
        self._fill("failures", {f"{f.request_id}-{i}": failure_cells(f)
                                for i, f in enumerate(failures[:FAILURES_SHOWN])},
                   f"Recent failures ({len(failures)})")
        span = f"last {BUCKETS * BUCKET_SECONDS / 60:.0f} min"
        rate = self.state.rate_series(now)
        latency = self.state.latency_series(now)
        self.query_one("#rate", Sparkline).data = rate
        self.query_one("#latency", Sparkline).data = latency
        # The scale: a sparkline's top is its largest value, so the title names it.
        self.query_one("#rate-title", Static).update(
            f"Requests/s · {span} · now {rate[-1]:.1f} · top {max(rate):.1f}")
        recent = [v for v in latency if v]
        self.query_one("#latency-title", Static).update(
            f"Latency · {span} · " + (f"now {duration(recent[-1])} · top {duration(max(recent))}"
                                      if recent else "no requests"))
        self._show_detail()

    def _fill(self, name: str, rows: dict[str, tuple[Any, ...]], title: str) -> None:
        table = self.query_one(f"#{name}", DataTable)
        sync_rows(table, rows, ordered=True)
        table.display = bool(rows)
        self.query_one(f"#{name}-empty").display = not rows
        title_id = {"flights": "#flight-title", "queue": "#queue-title",
                    "failures": "#failures-title"}[name]
        self.query_one(title_id, Static).update(title)

    def _show_detail(self) -> None:
        p = self.selected()
        detail = self.query_one("#provider-detail", Static)
        if p is None:
            detail.update("No providers configured: add [[providers]] to the config file."
                          if self.loaded else "Connecting…")
            return
        text = Text.assemble((p.name, "bold"), f" ({p.id}) · priority {p.priority}")
        server = server_summary(p)
        if server:
            text.append(f" · {server}")
        if p.last_error:
            text.append(f" · last error: {p.last_error}", style="red")
        detail.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "providers":
            self._show_detail()

    def selected(self) -> ProviderSnapshot | None:
        table = self.query_one("#providers", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.state.providers.get(str(key))

    # -- actions

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self.redraw()

    def action_filter(self) -> None:
        box = self.query_one("#board-filter", Input)
        box.display = True
        box.focus()

    def action_leave_filter(self) -> None:
        box = self.query_one("#board-filter", Input)
        if not box.value:
            box.display = False
        self.query_one("#providers", DataTable).focus()

    @on(Input.Changed, "#board-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self.redraw()

    @on(Input.Submitted, "#board-filter")
    def _filter_submitted(self) -> None:
        self.action_leave_filter()

    def action_toggle_provider(self) -> None:
        p = self.selected()
        if p is None:
            return
        enable = not p.enabled
        body = (f"{p.name} will take requests again." if enable else
                f"No new requests will be routed to {p.name}; requests in flight finish.")
        verb = "Enable" if enable else "Disable"

        def answered(choice: str | None) -> None:
            if choice:
                self.set_enabled(p.id, enable, save=choice == "save")

        self.app.push_screen(ToggleScreen(f"{verb} {p.id}?", body, verb), answered)

    @work(group="toggle", exit_on_error=False, description="Enable/disable")
    async def set_enabled(self, provider_id: str, enabled: bool, *, save: bool = False) -> None:
        saved = ""
        if save:  # the file first: a file that cannot be written changes nothing
            path = await self.client.save_provider(provider_id, {"enabled": enabled})
            await self.client.reload_config()
            saved = f" Saved in {path} and reloaded."
        snap = await self.client.set_enabled(provider_id, enabled)
        self.state.providers[snap.id] = snap
        self.redraw()
        self.notify(f"{snap.name} is {'enabled' if enabled else 'disabled'}"
                    + (saved or " until lai restarts.") , title="Providers")

    def action_edit_provider(self) -> None:
        p = self.selected()
        if p is None:
            return

        def submitted(edit: ProviderEdit | None) -> None:
            if edit is not None:
                self.save_provider(edit, p)

        self.app.push_screen(ProviderFormScreen(p), submitted)

    @work(group="toggle", exit_on_error=False, description="Edit provider")
    async def save_provider(self, edit: ProviderEdit, before: ProviderSnapshot) -> None:
        if not edit.values:
            self.notify("Nothing changed.", title="Providers", timeout=2)
            return
        path = await self.client.save_provider(edit.provider_id, edit.values)
        # The file changed: the engine reads it again, so every value applies now.
        await self.client.reload_config()
        self.poll()
        self.notify(f"Saved {', '.join(f'{k} = {v}' for k, v in edit.values.items())} for "
                    f"{before.name} in {path}; applied.", title="Providers", timeout=6)

    def action_reload_config(self) -> None:
        self.reload_config()

    @work(group="toggle", exit_on_error=False, description="Reload config")
    async def reload_config(self) -> None:
        changes = await self.client.reload_config()
        self.poll()
        self.notify("; ".join(changes) if changes else "The config file has no changes.",
                    title="Config reloaded", timeout=6)

    def action_check_provider(self) -> None:
        p = self.selected()
        if p is not None:
            self.notify(f"Checking {p.name}…", title="Providers", timeout=2)
            self.check(p.id)

    @work(group="check", exit_on_error=False, description="Check")
    async def check(self, provider_id: str) -> None:
        t = time.monotonic()
        snap = await self.client.check(provider_id)
        self.state.providers[snap.id] = snap
        self.redraw()
        took = (time.monotonic() - t) * 1000
        text = f"{snap.name}: {snap.status} ({took:.0f} ms)" + (
            f" — {snap.last_error}" if snap.last_error else "")
        if snap.status in ("healthy", "degraded"):
            self.notify(text, title="Check")
        else:
            self.notify(text, title="Check", severity="warning")
