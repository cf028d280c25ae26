"""Pane 1, the board: providers, request rate and latency, and the requests in flight.

Events redraw it at once; a one-second poll corrects counts the events cannot know
(queue depths per provider, tokens so far). Rows are keyed and only changed cells are
updated, so nothing flickers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static

from lai.engine.types import ProviderSnapshot
from lai.tui.board_state import BUCKET_SECONDS, BUCKETS, BoardState, FlightRow
from lai.tui.client import ClientError
from lai.tui.notify import notify_error
from lai.tui.screens.base import PaneScreen
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.widgets.header import PaneHeader
from lai.tui.widgets.tables import sync_rows

STATUS_STYLE = {
    "healthy": "bold green",
    "degraded": "bold yellow",
    "unhealthy": "bold red",
    "disabled": "dim",
    "unknown": "dim italic",
}
PROVIDER_COLUMNS = (("status", "Status"), ("name", "Provider"), ("type", "Type"),
                    ("slots", "In flight"), ("queue", "Queue"), ("latency", "Latency"),
                    ("checked", "Last check"), ("fails", "Fails"), ("models", "Models"))
FLIGHT_COLUMNS = (("key", "Key"), ("model", "Model"), ("provider", "Provider"),
                  ("elapsed", "Elapsed"), ("tokens", "Tokens"))
RETRY_SECONDS = 2.0


def ago(then: float | None, now: float) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``; ``never`` before the first check."""
    if then is None:
        return "never"
    seconds = max(0, int(now - then))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def provider_cells(p: ProviderSnapshot, now: float) -> tuple[Any, ...]:
    """One board row. Warm models carry a filled dot, cold ones a hollow one."""
    models = Text()
    for i, model in enumerate(p.models):
        if i:
            models.append("  ")
        warm = model in p.warm_models
        models.append("● " if warm else "○ ", style="green" if warm else "dim")
        models.append(model)
    latency = "–" if p.latency_ms is None else f"{p.latency_ms:.0f} ms"
    fails = Text(str(p.consecutive_failures),
                 style="bold red" if p.consecutive_failures else "")
    return (Text(f"● {p.status}", style=STATUS_STYLE.get(p.status, "")), p.name, p.type,
            f"{p.active_requests}/{p.max_concurrent}", str(p.queue_depth), latency,
            ago(p.last_check, now), fails, models)


def flight_cells(f: FlightRow, now: float) -> tuple[Any, ...]:
    tokens = "–" if f.tokens is None else str(f.tokens)
    return (f.key_name or "(none)", f.model, f.provider, f"{max(0.0, now - f.started_at):.1f}s",
            tokens)


class BoardScreen(PaneScreen):
    """Live providers and traffic. ``e`` enables/disables, ``c`` checks now."""

    PANE = "board"
    BINDINGS = [
        Binding("e", "toggle_provider", "Enable/disable", id="board-toggle"),
        Binding("c", "check_provider", "Check now", id="board-check"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = BoardState()
        self.loaded = False
        self._stream_failed = False

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        with Vertical(id="board"):
            yield Static("Providers", classes="section-title")
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
            yield Static("In flight", id="flight-title", classes="section-title")
            yield DataTable(id="flights", cursor_type="row")
            yield Static("Nothing in flight.", id="flights-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        for table_id, columns in (("#providers", PROVIDER_COLUMNS), ("#flights", FLIGHT_COLUMNS)):
            table = self.query_one(table_id, DataTable)
            for key, label in columns:
                table.add_column(label, key=key)
        self._show_detail()
        self.poll()
        self.follow_events()
        self.set_interval(1.0, self.poll)

    # -- data

    @work(group="poll", exclusive=True, exit_on_error=False, description="Loading providers")
    async def poll(self) -> None:
        """Fresh provider state (and, embedded, the engine's in-flight list)."""
        providers = await self.client.providers()
        flights = await self.client.in_flight()
        self.state.set_providers(providers)
        if flights is not None:
            self.state.set_flights(flights)
        self.loaded = True
        self.redraw()

    @work(group="events", exclusive=True, exit_on_error=False, description="Live events")
    async def follow_events(self) -> None:
        """Apply engine events as they come; reconnect after a broken stream."""
        while True:
            try:
                async for event in self.client.events():
                    if self._stream_failed:
                        self._stream_failed = False
                        self.notify("Live events are back.", title="Live events")
                    self.state.apply(event)
                    self.redraw()
            except ClientError as exc:
                if not self._stream_failed:  # one notification per outage, not per retry
                    self._stream_failed = True
                    notify_error(self, exc, "Live events")
            await asyncio.sleep(RETRY_SECONDS)

    # -- drawing

    def redraw(self) -> None:
        now = self.now()
        table = self.query_one("#providers", DataTable)
        sync_rows(table, {p.id: provider_cells(p, now) for p in self.state.providers.values()})
        flights = self.query_one("#flights", DataTable)
        sync_rows(flights, {f.request_id: flight_cells(f, now)
                            for f in self.state.flights.values()})
        self.query_one("#flights-empty").display = not self.state.flights
        flights.display = bool(self.state.flights)
        self.query_one("#flight-title", Static).update(
            f"In flight ({len(self.state.flights)})")
        rate = self.state.rate_series(now)
        latency = self.state.latency_series(now)
        self.query_one("#rate", Sparkline).data = rate
        self.query_one("#latency", Sparkline).data = latency
        self.query_one("#rate-title", Static).update(
            f"Requests/s · last {BUCKETS * BUCKET_SECONDS / 60:.0f} min · now {rate[-1]:.1f}")
        recent = [v for v in latency if v]
        self.query_one("#latency-title", Static).update(
            f"Latency · last {BUCKETS * BUCKET_SECONDS / 60:.0f} min · "
            + (f"last {recent[-1]:.0f} ms" if recent else "no requests"))
        self._show_detail()

    def _show_detail(self) -> None:
        p = self.selected()
        detail = self.query_one("#provider-detail", Static)
        if p is None:
            detail.update("No providers configured: add [[providers]] to the config file."
                          if self.loaded else "Connecting…")
            return
        text = Text.assemble((p.name, "bold"), f" ({p.id}) · priority {p.priority}")
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

    def action_toggle_provider(self) -> None:
        p = self.selected()
        if p is None:
            return
        enable = not p.enabled
        body = (f"{p.name} will take requests again." if enable else
                f"No new requests will be routed to {p.name}; requests in flight finish.")
        verb = "Enable" if enable else "Disable"

        def answered(yes: bool | None) -> None:
            if yes:
                self.set_enabled(p.id, enable)

        self.app.push_screen(ConfirmScreen(f"{verb} {p.id}?", body, yes=verb), answered)

    @work(group="toggle", exit_on_error=False, description="Enable/disable")
    async def set_enabled(self, provider_id: str, enabled: bool) -> None:
        snap = await self.client.set_enabled(provider_id, enabled)
        self.state.providers[snap.id] = snap
        self.redraw()
        self.notify(f"{snap.name} is {'enabled' if enabled else 'disabled'}.",
                    title="Providers")

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
