"""One table from the JSON of bench/peers/run.sh: lai beside each peer, as bench/README.md
quotes it. ``python bench/peers/table.py DIR`` (DIR holds lai.json, portkey.json, ...)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = ("lai", "portkey", "litellm", "vllm-router")


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, dict[str, Any]]) -> str:
    names = [n for n in NAMES if n in results]
    head = "| | direct | " + " | ".join(f"{n} added" for n in names) + " |"
    rows = [head, "| --- | ---: | " + " | ".join("---:" for _ in names) + " |"]

    def row(label: str, direct_key: str | None, key: str, spec: str, sign: bool) -> None:
        first = results[names[0]]["summary"]
        direct = _f(first.get(direct_key), spec) if direct_key else ""
        cells = []
        for n in names:
            v = results[n]["summary"].get(key)
            cells.append(("+" if sign and v is not None and v >= 0 else "") + _f(v, spec))
        rows.append(f"| {label} | {direct} | " + " | ".join(cells) + " |")

    row("p50 latency, 1 client (ms)", "direct_p50_ms", "added_p50_ms", ".2f", True)
    row("p99 latency, 1 client (ms)", "direct_p99_ms", "added_p99_ms", ".2f", True)
    row("req/s, 32 clients (gateway)", "direct_rps", "lai_rps", ",.0f", False)
    row("req/s, 32 clients / direct", None, "ratio_rps", ".3f", False)
    row("time to first token, tokens 5 ms apart (ms)", "direct_ttft_ms", "added_ttft_ms",
        ".2f", True)
    row("time to first token, burst (ms)", "direct_burst_ttft_ms", "added_burst_ttft_ms",
        ".2f", True)
    mem = ["| RSS after start / peak under load (MiB) | | " + " | ".join(
        f"{_f(results[n]['memory']['after_start_mib'], '.0f')} / "
        f"{_f(results[n]['memory']['under_load_peak_mib'], '.0f')}" for n in names) + " |"]
    errors = [f"- {n}: {e}" for n in names for e in results[n].get("errors", [])]
    return "\n".join(rows + mem + ([""] + errors if errors else []))


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("/tmp/peers/results")
    results = {n: json.loads((folder / f"{n}.json").read_text())
               for n in NAMES if (folder / f"{n}.json").exists()}
    if not results:
        print(f"no results in {folder}", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
