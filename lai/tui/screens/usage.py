"""Pane 5, usage: requests, tokens, cost, local share, errors and durations over a window.

The figures are ``lai.store.stats.usage_stats``, the same function ``lai stats`` and
``GET /v1/stats`` print, so the pane and the command never disagree. ``d`` switches the
window (1, 7, 30 days), ``g`` the grouping (day, model, provider, key); bars are scaled
to the largest group and the scale is written above the table.

Below, every key with limits shows each limit and its use now: requests in flight and
queued (the engine's, as the board counts them), rpm and tpm over the last minute and
spend against each budget (``lai.store.keyusage.key_limits``, what ``lai keys list``
prints in its LIMITS (USED) column).
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
    from lai.engine.types import InFlight, Queued
    from lai.store.keyusage import KeyLimits, LimitUse
    from lai.store.stats import GroupStats, UsageReport

WINDOWS = (1, 7, 30)
GROUPINGS = ("day", "model", "provider", "key")
BAR_WIDTH = 10
GROUP_WIDTH = 20
"""Cells of the group column: with the others the table fits 120 columns (the TUI's
terminal over SSH), a vertical scrollbar included; a longer key or model is cut in the
middle so that names differing only at the end stay apart."""
REFRESH_SECONDS = 10.0
COLUMNS = (("group", "Group"), ("requests", "Requests"), ("bar", "Req. share"),
           ("errors", "Errors"), ("tokens", "Tokens"), ("cost", "Cost (USD)"),
           ("cost_bar", "Cost share"), ("local", "Local"), ("p50", "p50"),
           ("p95", "p95"), ("failovers", "Failovers"))
LIMIT_COLUMNS = (("key", "Key"), ("in_flight", "In flight"), ("queued", "Queued"),
                 ("rpm", "Requests/min"), ("tpm", "Tokens/min"), ("day", "Today (USD)"),
                 ("week", "This week"), ("month", "This month"))
NO_LIMITS = ("No key has limits. Set them with l on pane 3, or "
             "`lai keys update NAME --rpm 60 --budget 5/day`.")


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
    if ms < 1000:
        return f"{ms:.0f} ms"
    # Whole seconds from 100 s: at most six characters, as the p50 and p95 columns allow.
    return f"{ms / 1000:.1f} s" if ms < 99_950 else f"{ms / 1000:.0f} s"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def fit(text: str, width: int = GROUP_WIDTH) -> str:
    """``text`` if it has at most ``width`` characters, else its start and end around an
    ellipsis (``agent-clau…laptop-2``)."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return f"{text[:width - 1 - tail]}…{text[-tail:]}"


def _num(text: str, style: str = "") -> Text:
    # Figures line up on the right, as in ``lai stats``.
    return Text(text, style=style, justify="right")


def group_cells(g: GroupStats, most_requests: int, most_cost: float) -> tuple[Any, ...]:
    return (fit(g.group) if g.group is not None else "(none)", _num(str(g.requests)),
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


def _level(used: float, allowed: float, *, hard: bool = True) -> str:
    """Yellow from 80 % of a limit; at it, red for a limit that refuses (rpm, tpm, a
    budget), yellow for a cap that makes requests wait (in flight)."""
    if allowed <= 0 or used < 0.8 * allowed:
        return ""
    return "bold red" if used >= allowed and hard else "yellow"


def _of(used: int | None, allowed: int | None, *, hard: bool) -> Text:
    """``1/2`` for a cap and what holds it now; ``≤2`` when the use is unknown."""
    if allowed is None:
        return Text("–", style="dim", justify="right")
    if used is None:
        return _num(f"≤{allowed}")
    return _num(f"{used}/{allowed}", _level(used, allowed, hard=hard))


def _use(u: LimitUse | None, money: bool = False) -> Text:
    """``12/60`` or ``$1.20/$5.00 24%``: a limit's use now, "–" without the limit."""
    if u is None:
        return Text("–", style="dim", justify="right")
    style = _level(u.used, u.allowed)
    if money:
        return _num(f"${u.used:.2f}/${u.allowed:.2f} {u.used / u.allowed:4.0%}", style)
    return _num(f"{count(int(u.used))}/{count(int(u.allowed))}", style)


def limit_cells(k: KeyLimits, flights: list[InFlight] | None,
                queue: list[Queued] | None) -> tuple[Any, ...]:
    in_flight = None if flights is None else sum(f.key_name == k.name for f in flights)
    queued = None if queue is None else sum(q.key_name == k.name for q in queue)
    return (k.name, _of(in_flight, k.quota.max_concurrent, hard=False),
            _of(queued, k.quota.max_queued, hard=True),
            _use(k.use("rpm")), _use(k.use("tpm")), _use(k.use("day"), True),
            _use(k.use("week"), True), _use(k.use("month"), True))


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
        yield Static("Key limits · use now (rpm and tpm over the last minute; budgets per "
                     "UTC day, week from Monday, month)", id="limits-title",
                     classes="section-title")
        yield DataTable(id="usage-limits", cursor_type="row", zebra_stripes=True)
        yield Static(NO_LIMITS, id="limits-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#usage", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        limits = self.query_one("#usage-limits", DataTable)
        for key, label in LIMIT_COLUMNS:
            limits.add_column(label, key=key)
        limits.display = False
        self.query_one("#usage-empty").display = False
        self.query_one("#limits-empty").display = False
        self.load()
        self.set_interval(REFRESH_SECONDS, self._refresh_if_shown)

    def client_replaced(self) -> None:
        self.load()

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
        keys = await self.client.key_limits()
        flights = queue = None
        if any(k.quota.max_concurrent is not None or k.quota.max_queued is not None
               for k in keys):
            flights = await self.client.in_flight()
            queue = await self.client.queued()
        self.draw_limits(keys, flights, queue)

    def draw_limits(self, keys: list[KeyLimits], flights: list[InFlight] | None,
                    queue: list[Queued] | None) -> None:
        table = self.query_one("#usage-limits", DataTable)
        sync_rows(table, {k.name: limit_cells(k, flights, queue) for k in keys},
                  ordered=True)
        table.display = bool(keys)
        self.query_one("#limits-empty").display = not keys

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
