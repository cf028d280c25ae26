"""bench/versus.py runs end to end both ways (two `lai proxy` under wrk, and the engine
alone in subprocesses) and prints a row per tree. It asserts nothing about speed: the
figures are in bench/README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import WRK, require_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", [[], ["--engine", "--stream"]])
def test_versus_bench_smoke_prints_a_row_per_tree(mode: list[str]) -> None:
    if not mode:
        require_tool(*WRK)
    done = subprocess.run(
        [sys.executable, "bench/versus.py", str(ROOT), str(ROOT), "--smoke", *mode],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {ROOT} |")]
    assert len(rows) == 2, done.stdout
