"""`lai stats` as a user runs it (a subprocess): figures match the rows they come from."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from lai.store.db import open_store
from lai.store.stats import utc_day
from tests.store.stats_rows import (
    CONFIG_MODELS,
    CONFIG_PROVIDERS,
    EXPECTED_DAY_PERCENTILES,
    independent_figures,
    insert,
    known_rows,
    moments,
)

LOCAL = {"box"}


def write_config(folder: Path) -> Path:
    doc = {
        "server": {"database_url": "sqlite:///lai.db", "data_dir": "data"},
        "providers": CONFIG_PROVIDERS,
        "models": CONFIG_MODELS,
    }
    path = folder / "config.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


def lai(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The working directory is elsewhere: the relative sqlite path must follow the file.
    return subprocess.run(
        [sys.executable, "-m", "lai.cli", "stats", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


@pytest.fixture
def config_with_rows(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    config = write_config(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    try:
        store.upgrade()
        rows = known_rows(datetime.now(UTC))
        insert(store, rows)
    finally:
        store.dispose()
    return config, rows


def assert_matches(got: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    expected = independent_figures(rows, LOCAL)
    assert got["cost_usd"] == pytest.approx(expected.pop("cost_usd"), abs=1e-12)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize(
    ("by", "field"),
    [("provider", "provider_id"), ("model", "model_id"), ("key", "key_name")],
)
def test_json_groups_match_the_rows(config_with_rows, tmp_path, by, field):
    config, rows = config_with_rows
    done = lai(config, "--by", by, "--json", cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    recent = [r for r in rows if r["request_id"] != "req_stats_008"]  # 40 days old
    assert report["by"] == by and report["days"] == 30
    assert {g["group"] for g in report["groups"]} == {r[field] for r in recent}
    for group in report["groups"]:
        assert_matches(group, [r for r in recent if r[field] == group["group"]])
    assert_matches(report["total"], recent)


def test_json_by_day_with_percentiles_and_a_longer_window(config_with_rows, tmp_path):
    config, rows = config_with_rows
    done = lai(config, "--json", cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    at = moments()
    days = {utc_day(at["yesterday"]): "yesterday", utc_day(at["today"]): "today"}
    assert [g["group"] for g in report["groups"]] == list(days)
    for group in report["groups"]:
        assert_matches(group, [r for r in rows if utc_day(r["started_at"]) == group["group"]])
        p50, p95 = EXPECTED_DAY_PERCENTILES[days[group["group"]]]
        assert (group["p50_duration_ms"], group["p95_duration_ms"]) == (p50, p95)
    total = report["total"]
    assert (total["p50_duration_ms"], total["p95_duration_ms"]) == EXPECTED_DAY_PERCENTILES[
        "total"]

    longer = json.loads(lai(config, "--days", "60", "--json", cwd=tmp_path.parent).stdout)
    assert len(longer["groups"]) == 3
    assert_matches(longer["total"], rows)


def test_table_is_aligned_and_has_the_same_totals(config_with_rows, tmp_path):
    config, rows = config_with_rows
    done = lai(config, "--by", "provider", cwd=tmp_path.parent)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip("\n").split("\n")
    assert lines[0].startswith("last 30 days (since ") and lines[0].endswith("by provider")
    header = lines[2].split()
    assert header == ["provider", "requests", "errors", "prompt", "completion", "tokens",
                      "cost_usd", "local", "p50_ms", "p95_ms", "failovers"]
    table = [line for line in lines[2:] if not set(line) <= {"-", " "}]
    # Right-aligned numbers: every column ends where its header ends.
    ends = [lines[2].index(h) + len(h) for h in header[1:]]
    for line in table[1:]:
        for end in ends:
            assert line[end - 1] != " " and (end == len(line) or line[end] == " "), line
    total = table[-1].split()
    recent = [r for r in rows if r["request_id"] != "req_stats_008"]
    expected = independent_figures(recent, LOCAL)
    assert total[0] == "total"
    assert [int(x) for x in total[1:6]] == [
        expected["requests"], expected["errors"], expected["prompt_tokens"],
        expected["completion_tokens"], expected["total_tokens"]]
    assert float(total[6]) == pytest.approx(expected["cost_usd"], abs=1e-6)
    assert total[7] == f"{expected['local_share']:.0%}"
    assert total[-1] == str(expected["failovers"])
    assert "-" in [line.split()[0] for line in table]  # the request no provider took


def test_fresh_machine_is_migrated_first(tmp_path):
    config = write_config(tmp_path)
    done = lai(config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("no requests")
    assert (tmp_path / "lai.db").is_file()
    empty = json.loads(lai(config, "--json", cwd=tmp_path).stdout)
    assert empty["groups"] == [] and empty["total"]["requests"] == 0


def test_bad_days_is_a_usage_error(tmp_path):
    config = write_config(tmp_path)
    done = lai(config, "--days", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "--days" in done.stderr
