"""``lai stats [--days 30] [--by day|model|provider|key] [--json]``: usage and cost.

Migrates the store to head first (so it works on a fresh machine), then prints the
figures of ``lai.store.stats`` as an aligned table, or with ``--json`` the same object
``GET /v1/stats`` answers.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from lai.commands.common import configured_store
from lai.store.stats import GroupStats, UsageReport, usage_stats

_COLUMNS = (
    "requests", "errors", "prompt", "completion", "tokens", "cost_usd", "local",
    "p50_ms", "p95_ms", "failovers",
)


def run(args: argparse.Namespace) -> int:
    """Print the statistics and return the exit code (2 for ``--days`` below 1).

    Raises:
        ConfigError: the config is missing or invalid (``lai.cli`` exits 2).
        LaiError: the database cannot be reached or migrated (exit 1).
    """
    if args.days < 1:
        print("lai: --days must be at least 1", file=sys.stderr)
        return 2
    with configured_store(args) as (settings, store):
        report = usage_stats(store, settings, days=args.days, by=args.by)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(render_table(report))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _usd(value: float) -> str:
    # Cloud requests often cost fractions of a cent: six places keep them visible.
    return f"{value:.6f}"


def _cells(g: GroupStats) -> list[str]:
    return [
        str(g.requests),
        str(g.errors),
        str(g.prompt_tokens),
        str(g.completion_tokens),
        str(g.total_tokens),
        _usd(g.cost_usd),
        "-" if g.local_share is None else f"{g.local_share:.0%}",
        _ms(g.p50_duration_ms),
        _ms(g.p95_duration_ms),
        str(g.failovers),
    ]


def render_table(report: UsageReport) -> str:
    """The report as an aligned text table: a title, a header, one line per group, total."""
    title = (
        f"last {report.days} day{'s' if report.days != 1 else ''} "
        f"(since {report.since:%Y-%m-%d} UTC), by {report.by}"
    )
    if not report.groups:
        return f"{title}\nno requests"
    header = [report.by, *_COLUMNS]
    body = [[g.group if g.group is not None else "-", *_cells(g)] for g in report.groups]
    total = ["total", *_cells(report.total)]
    rows = [header, *body, total]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # The group name reads left to right; numbers line up on the right.
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, "", line(header), rule, *map(line, body), rule, line(total)])
