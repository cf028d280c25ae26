"""bench/recorder.py and bench/memory.py run end to end (so they cannot rot) and report
their figures. They assert nothing about speed: the figures are in bench/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_recorder_bench_writes_every_record_and_reports_the_backlog(tmp_path: Path) -> None:
    out = tmp_path / "recorder.json"
    done = _run(["bench/recorder.py", "--smoke", "--out", str(out)], 120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["submitted"] == 1000 == res["written"]
    assert res["messages"] == 2000 and res["failed_writes"] == 0
    assert res["drained_s"] is not None and res["backlog_peak"] >= 0
    assert "backlog peak" in done.stdout


def test_memory_bench_reports_rss_after_start_and_each_round(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = _run(["bench/memory.py", "--rounds", "2", "--requests", "40", "--streams", "2",
                 "--clients", "4", "--settle", "0.2", "--out", str(out)], 180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["requests"] for r in res["rounds"]] == [42, 84]
    assert all(r["errors"] == 0 and r["rss_mib"] for r in res["rounds"])
    assert res["after_start_mib"] and res["growth_from_round_2_mib"] is not None
    assert res["lai_exit"] == 0
    assert "growth:" in done.stdout
