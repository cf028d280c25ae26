"""Pane 5 over a real SQLite store: the figures on screen are the ones `lai stats --json`
prints for the same window and grouping."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from lai.config.loader import load_settings
from lai.runtime import build_runtime
from lai.store.db import open_store
from lai.tui.app import LaiApp
from lai.tui.embedded import EmbeddedClient
from lai.tui.screens.usage import UsageScreen
from tests.store.stats_rows import insert, known_rows
from tests.test_cli_stats import write_config
from tests.tui.conftest import SIZE, wait_for


def lai_stats(config: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "lai.cli", "stats", "--config", str(config), "--json", *args],
        capture_output=True, text=True, timeout=120, cwd=config.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def test_usage_pane_shows_what_lai_stats_prints(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    try:
        store.upgrade()
        insert(store, known_rows(datetime.now(UTC)))
    finally:
        store.dispose()
    settings, _ = load_settings(config)
    runtime = build_runtime(settings)
    app = LaiApp(EmbeddedClient(runtime, config_path=config))

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        usage = app.screen
        assert isinstance(usage, UsageScreen)
        # The pane opens on 7 days by day; d cycles to 30 days, g twice to provider.
        await wait_for(pilot, lambda: usage.report is not None, what="the first report")
        await pilot.press("d", "g", "g")
        await wait_for(pilot, lambda: usage.report is not None and usage.report.by == "provider"
                       and usage.report.days == 30, what="30 days by provider")
        assert usage.report is not None
        shown = usage.report.to_dict()
        table = usage.query_one("#usage", DataTable)
        on_screen = {str(row.value): str(table.get_cell(row, "requests"))
                     for row in table.rows}
        await wait_for(pilot, lambda: "30 days" in str(usage.query_one("#usage-title")
                                                       .render()), what="the title")

    printed = lai_stats(config, "--days", "30", "--by", "provider")
    assert shown["groups"] == printed["groups"] and shown["total"] == printed["total"]
    assert on_screen == {str(g["group"]): str(g["requests"]) for g in printed["groups"]}
    assert sum(g["requests"] for g in printed["groups"]) == printed["total"]["requests"] > 0


async def test_by_key_fits_a_120_column_terminal(tmp_path: Path) -> None:
    """Over SSH in 120x40: by key, with a 64-character key name, durations past 100 s
    and enough keys for a vertical scrollbar, every column is on screen (nothing to
    scroll sideways) and the long name keeps its start and its end."""
    config = write_config(tmp_path)
    long_name = "nightly-" + "x" * 48 + "-summary"
    assert len(long_name) == 64
    names = [long_name, *(f"agent-{n:02d}" for n in range(40))]
    rows = [row for _ in names for row in known_rows(datetime.now(UTC))[:3]]
    for i, row in enumerate(rows):
        row.update(request_id=f"req_wide_{i:04d}", key_name=names[i // 3],
                   duration_ms=123_456.0 + i, prompt_tokens=999_000)
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    try:
        store.upgrade()
        insert(store, rows)
    finally:
        store.dispose()
    settings, _ = load_settings(config)
    app = LaiApp(EmbeddedClient(build_runtime(settings), config_path=config))

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        usage = app.screen
        assert isinstance(usage, UsageScreen)
        await wait_for(pilot, lambda: usage.report is not None, what="the first report")
        await pilot.press("g", "g", "g")
        await wait_for(pilot, lambda: usage.report is not None and usage.report.by == "key",
                       what="by key")
        table = usage.query_one("#usage", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(names), what="every key")
        await pilot.pause()
        assert table.show_vertical_scrollbar
        assert table.max_scroll_x == 0, (table.virtual_size.width, table.size.width)
        shown = str(table.get_cell(long_name, "group"))
        assert shown.startswith("nightly-") and shown.endswith("-summary") and "…" in shown
        assert len(shown) < len(long_name)
        assert str(table.get_cell(long_name, "p95")).strip() == "123 s"
