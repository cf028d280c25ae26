"""bench/outside.py runs end to end (wrk, the uvicorn fake, `lai proxy` as a subprocess)
and reports every figure of its table. It asserts nothing about speed: the figures and
the targets are in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.tools import WRK, require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_outside_bench_smoke_reports_every_figure(tmp_path: Path) -> None:
    require_tool(*WRK)
    out = tmp_path / "outside.json"
    done = subprocess.run(
        [sys.executable, "bench/outside.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["errors"] == []
    missing = [k for k, v in res["summary"].items() if v is None]
    assert not missing, missing
    assert res["rss_mib"]["lai_peak_1_client"] and res["rss_mib"]["lai_peak_32_clients"]
    features = res["features"]
    # Issue 16's configuration: every request checked, recorded and counted.
    assert features["auth"].startswith("on")
    assert features["recorded_rows"] == features["metrics_requests_total"] > 0
    assert "| CPU per request, 1 client |" in done.stdout
