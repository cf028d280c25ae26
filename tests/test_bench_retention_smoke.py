"""bench/retention.py runs end to end (so it cannot rot) and reports every figure. It
asserts nothing about speed: the figures are in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_retention_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "retention.json"
    done = subprocess.run(
        [sys.executable, "bench/retention.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads(out.read_text())
    # Half the conversations are past retention, the other half past content retention.
    assert res["swept"] == {"requests": 500, "conversations": 250, "messages_cleared": 1000}
    assert res["summary"]["writer_failures"] == 0, res["failures"]
    assert res["summary"]["transactions"] >= 3  # batches, not one long write lock
    missing = [k for k, v in res["summary"].items() if v is None]
    assert not missing, missing
    assert res["summary"]["size_after_vacuum_mib"] < res["summary"]["size_before_mib"]
