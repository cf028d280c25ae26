"""The benchmark runs end to end (so it cannot rot) and reports every figure. It asserts
nothing about speed: timing targets live in bench/README.md, not in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIGURES = [
    "direct_p50_ms", "lai_p50_ms", "added_p50_ms", "ratio_p50",
    "direct_p99_ms", "lai_p99_ms", "added_p99_ms",
    "direct_rps", "lai_rps", "ratio_rps",
    "direct_load_p99_ms", "lai_load_p99_ms",
    "direct_ttft_ms", "lai_ttft_ms", "added_ttft_ms",
    "direct_gap_ms", "lai_gap_ms", "added_gap_ms",
    "direct_burst_ttft_ms", "lai_burst_ttft_ms", "added_burst_ttft_ms",
]


def test_bench_smoke_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["errors"] == []
    missing = [k for k in FIGURES if res["summary"].get(k) is None]
    assert not missing, missing
    memory = res["memory"]
    assert memory["after_start_mib"] and memory["under_load_peak_mib"]
    assert len(memory["after_load_mib"]) == res["plan"]["rounds"]
    assert memory["growth_mib"] is not None
    features = res["features"]
    # The configuration a user runs: every request checked, recorded and counted.
    assert features["auth"].startswith("on")
    assert features["metrics"].startswith("on")
    assert features["recorded_rows"] == features["lai_requests"] > 0
    assert set(res["targets"]) == {"added_p50_1_client", "throughput_32_clients", "added_ttft",
                                   "rss_after_start", "rss_growth"}
    assert "lai/direct" in done.stdout
