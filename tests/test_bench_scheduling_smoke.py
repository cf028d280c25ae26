"""bench/scheduling.py runs end to end (so it cannot rot): both modes, every figure, and
its checks hold (the --local-only key stays home, no box over its
max_concurrent, every request answered, nobody starved). It asserts nothing about speed:
the figures are in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_scheduling_bench_runs_both_modes_and_its_checks_hold(tmp_path: Path) -> None:
    out = tmp_path / "scheduling.json"
    done = subprocess.run(
        [sys.executable, "bench/scheduling.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["mode"] for r in res["runs"]] == ["fair", "fifo"]
    for run in res["runs"]:
        assert all(ok is True for ok in run["checks"].values()), run["checks"]
        assert run["checks"]["local_only_stayed_home"] is True
        for cls in ("people", "agent", "batch", "private"):
            figures = run["classes"][cls]
            assert figures["requests"] > 0
            assert figures["ttft_p50_s"] is not None and figures["ttft_p95_s"] is not None
        assert set(run["swaps"]) == {"gpu-big", "gpu-small"}
        # the cloud served something, and lai's recorded spend is the fake's own count
        assert run["boxes"]["cloud"]["requests"] > 0
        assert run["cloud_spend_usd"]["lai"] is not None
        assert abs(run["cloud_spend_usd"]["lai"] - run["cloud_spend_usd"]["fake"]) < 1e-4
        for name, box in run["boxes"].items():
            assert box["max_active"] >= 1, name
    assert "clock scale" in done.stdout
