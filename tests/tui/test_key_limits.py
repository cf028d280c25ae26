"""Key limits in the TUI over a real SQLite store, the embedded engine and a real
`lai proxy`: pane 5 shows each limit with the use `lai keys list` prints; the limits form
of pane 3 changes what `lai keys list` shows, and a bad value stores nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from lai.config.loader import load_settings
from lai.engine.quota import KeyQuota
from lai.runtime import build_runtime
from lai.store import keys as keyrepo
from lai.store.db import open_store
from lai.store.models import RequestRecord
from lai.tui.app import LaiApp
from lai.tui.attached import AttachedClient
from lai.tui.client import ClientError, LimitsEdit
from lai.tui.embedded import EmbeddedClient
from lai.tui.probe import proxy_answers, socket_path
from lai.tui.screens.key_limits_form import KeyLimitsFormScreen
from tests.fakes.upstream import FakeUpstream
from tests.test_cli_stats import write_config
from tests.test_engine_lock import _config, _listening, _proxy, _stop
from tests.tui.conftest import SIZE, wait_for


def lai_keys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lai.cli", "keys", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=config.parent,
    )


def listed(config: Path) -> dict[str, dict[str, Any]]:
    """`lai keys list --json`, by name (current keys)."""
    done = lai_keys(config, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {k["name"]: k for k in json.loads(done.stdout) if k["grace_until"] is None}


def setup(tmp_path: Path) -> tuple[Path, LaiApp]:
    """A config, a store with a limited key that spent $1.25 today, an embedded app."""
    config = write_config(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    try:
        store.upgrade()
        keyrepo.create_key(store, "batch", quota=KeyQuota(
            max_concurrent=2, rpm=60, budgets=(("day", 5.0), ("month", 40.0))))
        keyrepo.create_key(store, "laptop")
        with store.write_session() as session:
            for i, cost in enumerate((1.0, 0.25)):
                session.add(RequestRecord(request_id=f"req_spent{i}", key_name="batch",
                                          model_requested="m1", status="success",
                                          prompt_tokens=100, completion_tokens=20,
                                          cost_usd=cost, started_at=datetime.now(UTC)))
    finally:
        store.dispose()
    settings, _ = load_settings(config)
    return config, LaiApp(EmbeddedClient(build_runtime(settings), config_path=config))


async def test_usage_pane_shows_each_limit_with_the_use_lai_keys_list_prints(
    tmp_path: Path,
) -> None:
    config, app = setup(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        table = app.screen.query_one("#usage-limits", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the limited key's row")
        row = {col.value: str(table.get_cell("batch", col)) for col in table.columns}

    printed = listed(config)
    use = {u["limit"]: u for u in printed["batch"]["usage"]}
    assert use["rpm"]["used"] == 2 and use["day"]["used"] == 1.25
    assert row["rpm"] == f"{use['rpm']['used']}/60"
    assert row["day"] == "$1.25/$5.00  25%"
    assert row["month"] == "$1.25/$40.00   3%"
    assert row["in_flight"] == "0/2" and row["queued"] == "–" and row["tpm"] == "–"
    # The key without limits has no row; its LIMITS (USED) column says "-".
    assert printed["laptop"]["usage"] == []
    text = lai_keys(config, "list").stdout
    assert "max 2 in flight, 2/60 rpm, $1.25/$5.00/day, $1.25/$40.00/month" in text


async def _open_form(pilot: Any, app: LaiApp) -> KeyLimitsFormScreen:
    await pilot.press("3")
    table = app.screen.query_one("#keys", DataTable)
    await wait_for(pilot, lambda: table.row_count == 2, what="both keys")
    table.move_cursor(row=0)  # batch (by name)
    await pilot.press("l")
    await wait_for(pilot, lambda: isinstance(app.screen, KeyLimitsFormScreen),
                   what="the limits form")
    assert isinstance(app.screen, KeyLimitsFormScreen)
    return app.screen


async def test_the_limits_form_changes_what_lai_keys_list_shows(tmp_path: Path) -> None:
    config, app = setup(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(pilot, app)
        assert form.query_one("#limit-rpm", Input).value == "60"
        assert form.query_one("#budget-day", Input).value == "5"
        form.query_one("#limit-rpm", Input).value = "30"
        form.query_one("#limit-max_concurrent", Input).value = ""  # no cap any more
        form.query_one("#limit-tpm", Input).value = "20000"
        form.query_one("#budget-day", Input).value = "2.50"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, KeyLimitsFormScreen),
                       what="the form to close")
        await wait_for(pilot, lambda: any("limits" in str(n.message)
                                          for n in app._notifications), what="the notice")
        notice = [str(n.message) for n in app._notifications][-1]
        assert notice.startswith("batch: limits 30 rpm, 20000 tpm, $2.50/day, $40.00/month")
        detail = app.screen.query_one("#keys-detail")
        await wait_for(pilot, lambda: "30 rpm" in str(detail.render()), what="the detail")

    limits = listed(config)["batch"]["limits"]
    assert limits == {"max_concurrent": None, "max_queued": None, "rpm": 30, "tpm": 20000,
                      "budgets": {"day": 2.5, "month": 40.0}}
    assert "30 rpm" not in json.dumps(listed(config)["laptop"])


async def test_a_bad_value_is_a_notification_and_stores_nothing(tmp_path: Path) -> None:
    config, app = setup(tmp_path)
    before = listed(config)["batch"]["limits"]
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_form(pilot, app)
        form.query_one("#limit-rpm", Input).value = "30"  # good, but saved with the bad one
        form.query_one("#budget-week", Input).value = "lots"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications),
                       what="the error")
        errors = [str(n.message) for n in app._notifications if n.severity == "error"]
        assert errors == ["budget per week must be a number of USD, not 'lots'"]
        assert app.screen is form  # still open, with what was typed
        assert form.query_one("#budget-week", Input).value == "lots"
        form.query_one("#budget-week", Input).value = ""
        form.query_one("#limit-max_queued", Input).value = "-1"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len([n for n in app._notifications
                                           if n.severity == "error"]) == 2, what="error 2")
        assert [str(n.message) for n in app._notifications if n.severity == "error"][-1] == (
            "max_queued must be >= 0 (or 'none' for no limit), not -1")
        await pilot.press("escape")
    assert listed(config)["batch"]["limits"] == before


async def test_attached_the_form_writes_what_lai_keys_list_shows(tmp_path: Path) -> None:
    """Attached to a real proxy, the TUI writes key limits through the shared store as
    `lai keys update` does, and pane 5 reads the same figures."""
    with FakeUpstream() as upstream:
        config = _config(tmp_path, upstream.url)
        assert lai_keys(config, "create", "batch", "--rpm", "60").returncode == 0
        settings, _ = load_settings(config)
        proc = await _proxy(config)
        try:
            await _listening(proc)
            sock = socket_path(settings)
            for _ in range(200):
                if await asyncio.to_thread(proxy_answers, sock):
                    break
                await asyncio.sleep(0.05)
            client = AttachedClient(settings, open_store(settings.server.database_url), sock=sock)
            try:
                await client.update_key_limits("batch", LimitsEdit(
                    limits={"rpm": "", "max_queued": "3"}, budgets={"month": "12.5"}))
                with pytest.raises(ClientError) as bad:
                    await client.update_key_limits("batch", LimitsEdit(limits={"tpm": "0"}))
                assert bad.value.message == "tpm must be >= 1 (or 'none' for no limit), not 0"
                (shown,) = await client.key_limits()
            finally:
                await client.close()
                client.store.dispose()
        finally:
            await _stop(proc)
    limits = listed(config)["batch"]["limits"]
    assert limits == {"max_concurrent": None, "max_queued": 3, "rpm": None, "tpm": None,
                      "budgets": {"month": 12.5}}
    assert shown.quota.max_queued == 3 and shown.quota.budgets == (("month", 12.5),)
    assert [u.to_dict()["used"] for u in shown.uses] == [
        u["used"] for u in listed(config)["batch"]["usage"]] == [0.0]
