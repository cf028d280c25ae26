"""Pane 5, usage: requests, tokens, cost, local share, errors and durations over a window.

The figures are ``lai.store.stats.usage_stats``, the same function ``lai stats`` and
``GET /v1/stats`` print, so the pane and the command never disagree. ``d`` switches the
window (1, 7, 30 days), ``g`` the grouping (day, model, provider, key); bars are scaled
to the largest group and the scale is written above the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from lai.tui.screens.base import PaneScreen
from lai.tui.widgets.header import PaneHeader
from lai.tui.widgets.tables import sync_rows

if TYPE_CHECKING:
    from lai.store.stats import GroupStats, UsageReport

WINDOWS = (1, 7, 30)
GROUPINGS = ("day", "model", "provider", "key")
BAR_WIDTH = 16
REFRESH_SECONDS = 10.0
COLUMNS = (("group", "Group"), ("requests", "Requests"), ("bar", "Share of requests"),
           ("errors", "Errors"), ("tokens", "Tokens"), ("cost", "Cost (USD)"),
           ("cost_bar", "Share of cost"), ("local", "Local"), ("p50", "p50"),
           ("p95", "p95"), ("failovers", "Failovers"))


def bar(value: float, full: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar, ``full`` filling ``width`` cells (eighths for the last cell)."""
    if full <= 0 or value <= 0:
        return Text("·", style="dim")
    eighths = max(1, round(value / full * width * 8))
    text = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
    return Text(text, style="cyan")


def count(n: int) -> str:
    """``987``, ``12.3k``, ``4.56M``: counts that fit a narrow column."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def usd(value: float) -> str:
    # Local requests cost fractions of a cent in energy: four places keep them visible.
    return f"${value:.4f}" if value < 100 else f"${value:,.2f}"


def duration(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(text: str, style: str = "") -> Text:
    # Figures line up on the right, as in ``lai stats``.
    return Text(text, style=style, justify="right")


def group_cells(g: GroupStats, most_requests: int, most_cost: float) -> tuple[Any, ...]:
    return (g.group if g.group is not None else "(none)", _num(str(g.requests)),
            bar(g.requests, most_requests), _num(str(g.errors), "bold red" if g.errors else ""),
            _num(count(g.total_tokens)), _num(usd(g.cost_usd)), bar(g.cost_usd, most_cost),
            _num(share(g.local_share)), _num(duration(g.p50_duration_ms)),
            _num(duration(g.p95_duration_ms)), _num(str(g.failovers)))


def summary(report: UsageReport) -> Text:
    """The two totals lines above the table."""
    t = report.total
    error_rate = f" ({t.errors / t.requests:.1%})" if t.requests else ""
    return Text.assemble(
        (f"{t.requests} requests", "bold"), " · ",
        (f"{t.errors} errors{error_rate}", "bold red" if t.errors else ""), " · ",
        f"{count(t.total_tokens)} tokens ({count(t.prompt_tokens)} in, "
        f"{count(t.completion_tokens)} out) · cost ", (usd(t.cost_usd), "bold"), "\n",
        "served locally ", (share(t.local_share), "bold"),
        " · duration p50 ", duration(t.p50_duration_ms), ", p95 ",
        duration(t.p95_duration_ms), f" · {t.failovers} failovers",
    )


class UsageScreen(PaneScreen):
    """Usage and cost at a glance, refreshed every 10 s while shown."""

    PANE = "usage"
    BINDINGS = [
        Binding("d", "next_window", "Window 1/7/30 days", id="usage-window"),
        Binding("g", "next_grouping", "Group by day/model/provider/key", id="usage-group"),
        Binding("r", "refresh", "Refresh", id="usage-refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.days = 7
        self.by = "day"
        self.report: UsageReport | None = None

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        yield Static("Usage", id="usage-title", classes="section-title")
        yield Static("Loading…", id="usage-summary")
        yield Static("", id="usage-scale")
        yield DataTable(id="usage", cursor_type="row", zebra_stripes=True)
        yield Static("No requests in this window.", id="usage-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#usage", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.query_one("#usage-empty").display = False
        self.load()
        self.set_interval(REFRESH_SECONDS, self._refresh_if_shown)

    def on_screen_resume(self) -> None:
        self.load()

    def _refresh_if_shown(self) -> None:
        if self.is_current:
            self.load()

    @work(group="load", exclusive=True, exit_on_error=False, description="Usage")
    async def load(self) -> None:
        report = await self.client.usage(days=self.days, by=self.by)
        self.report = report
        self.draw(report)

    def draw(self, report: UsageReport) -> None:
        plural = "s" if report.days != 1 else ""
        self.query_one("#usage-title", Static).update(
            f"Usage · last {report.days} day{plural} (since {report.since:%Y-%m-%d} UTC) · "
            f"by {report.by}")
        self.query_one("#usage-summary", Static).update(summary(report))
        most_requests = max((g.requests for g in report.groups), default=0)
        most_cost = max((g.cost_usd for g in report.groups), default=0.0)
        self.query_one("#usage-scale", Static).update(Text(
            f"Bars: a full bar ({BAR_WIDTH} cells) is {most_requests} requests / "
            f"{usd(most_cost)}, the largest {report.by}.", style="dim"))
        table = self.query_one("#usage", DataTable)
        sync_rows(table, {str(g.group): group_cells(g, most_requests, most_cost)
                          for g in report.groups}, ordered=True)
        table.display = bool(report.groups)
        self.query_one("#usage-empty").display = not report.groups

    # -- actions

    def action_next_window(self) -> None:
        self.days = WINDOWS[(WINDOWS.index(self.days) + 1) % len(WINDOWS)]
        self.load()

    def action_next_grouping(self) -> None:
        self.by = GROUPINGS[(GROUPINGS.index(self.by) + 1) % len(GROUPINGS)]
        self.load()

    def action_refresh(self) -> None:
        self.load()
