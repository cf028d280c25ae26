"""The benchmark's figures: the summary of a run, the targets, the printed table."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from httpload import uvloop_module

TARGETS = {
    "added_p50_ms_1_client": 1.0,
    "rps_32_clients": 1000.0,
    "rps_ratio_32_clients": 0.15,
    "added_ttft_ms": 1.0,
    "rss_after_start_mib": 100.0,
    "rss_growth_mib": 5.0,
}


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def diff(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, 3)


def machine() -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    loop = "uvloop" if uvloop_module() is not None else "asyncio"
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "generator": f"python ({loop})"}


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _figure(value: Any) -> str:
    # Milliseconds with three decimals; request rates as whole numbers.
    return fmt(value, ".3f" if isinstance(value, float) and value < 100 else ".0f")


def table(res: dict[str, Any]) -> str:
    s = res["summary"]
    rows = [
        ("p50 latency, 1 client (ms)", s["direct_p50_ms"], s["lai_p50_ms"], s["added_p50_ms"],
         s["ratio_p50"]),
        ("p99 latency, 1 client (ms)", s["direct_p99_ms"], s["lai_p99_ms"], s["added_p99_ms"],
         s["ratio_p99"]),
        (f"req/s, {res['plan']['clients']} clients", s["direct_rps"], s["lai_rps"], None,
         s["ratio_rps"]),
        (f"p99 latency, {res['plan']['clients']} clients (ms)", s["direct_load_p99_ms"],
         s["lai_load_p99_ms"], s["added_load_p99_ms"], s["ratio_load_p99"]),
        ("time to first token (ms)", s["direct_ttft_ms"], s["lai_ttft_ms"], s["added_ttft_ms"],
         s["ratio_ttft"]),
        ("gap between chunks (ms)", s["direct_gap_ms"], s["lai_gap_ms"], s["added_gap_ms"],
         s["ratio_gap"]),
        ("time to first token, burst (ms)", s["direct_burst_ttft_ms"], s["lai_burst_ttft_ms"],
         s["added_burst_ttft_ms"], s["ratio_burst_ttft"]),
    ]
    if s.get("wrk_direct_rps") is not None:
        rows.append((f"req/s, {res['plan']['clients']} clients, wrk", s["wrk_direct_rps"],
                     s["wrk_lai_rps"], None, s["wrk_ratio_rps"]))
    name = res["gateway"]["name"]
    out = [f"{'':34} {'direct':>10} {name:>10} {'added':>9} {name + '/direct':>12}"]
    for label, direct, through, added, r in rows:
        plus = "" if added is None else ("+" if added >= 0 else "") + fmt(added, ".3f")
        out.append(f"{label:34} {_figure(direct):>10} {_figure(through):>10} {plus:>9} "
                   f"{fmt(r, '.3f'):>12}")
    m = res["memory"]
    out.append("")
    out.append(f"{name} RSS (MiB): after start {fmt(m['after_start_mib'], '.1f')}, under load "
               f"(peak) {fmt(m['under_load_peak_mib'], '.1f')}, after each load round "
               f"{', '.join(fmt(v, '.1f') for v in m['after_load_mib'])}; growth over the first "
               f"round (warm-up) {fmt(m['warmup_growth_mib'], '+.1f')}, from the second to the "
               f"last {fmt(m['growth_mib'], '+.1f')}")
    f = res["features"]
    out.append(f"features: auth {f['auth']}, recorded rows {f['recorded_rows']} of "
               f"{f['lai_requests']} requests, metrics {f['metrics']}")
    if res["errors"]:
        out.append(f"ERRORS: {res['errors']}")
    out.append("")
    for name_, t in res["targets"].items():
        out.append(f"target {name_}: {t['target']} -> {fmt(t['measured'], '.3f')} "
                   f"{'met' if t['met'] else 'NOT met'}")
    return "\n".join(out)


def targets(s: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    def row(target: str, measured: float | None, met: bool) -> dict[str, Any]:
        return {"target": target, "measured": measured, "met": bool(met)}

    """Each target of issue 8: what it asks, the figure measured, whether it is met."""
    rps_ok = (s["lai_rps"] or 0) >= TARGETS["rps_32_clients"] or (
        (s["ratio_rps"] or 0) >= TARGETS["rps_ratio_32_clients"])
    growth = m["growth_mib"]
    return {
        "added_p50_1_client": row("<= 1.0 ms", s["added_p50_ms"],
                                  s["added_p50_ms"] is not None and s["added_p50_ms"] <= 1.0),
        "throughput_32_clients": row(">= 1000 req/s or >= 0.15 of direct", s["lai_rps"], rps_ok),
        "added_ttft": row("<= 1.0 ms", s["added_ttft_ms"],
                          s["added_ttft_ms"] is not None and s["added_ttft_ms"] <= 1.0),
        "rss_after_start": row("<= 100 MiB", m["after_start_mib"],
                               m["after_start_mib"] is not None and m["after_start_mib"] <= 100),
        # Allocator noise moves RSS by a few MiB; a leak grows with every round.
        "rss_growth": row("no growth across rounds (< 5 MiB, second to last)", growth,
                          growth is not None and growth < TARGETS["rss_growth_mib"]),
    }


def summarize(latency: dict[str, Any], stream: dict[str, Any], rounds: list[dict[str, Any]],
              wrk: dict[str, Any] | None) -> dict[str, Any]:
    """The headline figures: medians over load rounds, added times and ratios."""
    direct_rounds = [r["direct"] for r in rounds]
    lai_rounds = [r["lai"] for r in rounds]
    s: dict[str, Any] = {
        "direct_p50_ms": latency["direct"]["p50_ms"], "lai_p50_ms": latency["lai"]["p50_ms"],
        "direct_p99_ms": latency["direct"]["p99_ms"], "lai_p99_ms": latency["lai"]["p99_ms"],
        "direct_rps": median([r["rps"] for r in direct_rounds]),
        "lai_rps": median([r["rps"] for r in lai_rounds]),
        "direct_load_p99_ms": median([r["p99_ms"] for r in direct_rounds]),
        "lai_load_p99_ms": median([r["p99_ms"] for r in lai_rounds]),
        "direct_ttft_ms": stream["direct"]["ttft_p50_ms"],
        "lai_ttft_ms": stream["lai"]["ttft_p50_ms"],
        "direct_gap_ms": stream["direct"]["gap_p50_ms"],
        "lai_gap_ms": stream["lai"]["gap_p50_ms"],
        "direct_burst_ttft_ms": stream["direct"]["burst_ttft_p50_ms"],
        "lai_burst_ttft_ms": stream["lai"]["burst_ttft_p50_ms"],
    }
    for what in ("p50", "p99", "load_p99", "ttft", "gap", "burst_ttft"):
        lai, direct = s[f"lai_{what}_ms"], s[f"direct_{what}_ms"]
        s[f"added_{what}_ms"] = diff(lai, direct)
        s[f"ratio_{what}"] = ratio(lai, direct)
    s["ratio_rps"] = ratio(s["lai_rps"], s["direct_rps"])
    if wrk:
        s["wrk_direct_rps"] = median([wrk["direct"]["rps"], wrk["direct_2"]["rps"]])
        s["wrk_lai_rps"] = wrk["lai"]["rps"]
        s["wrk_ratio_rps"] = ratio(s["wrk_lai_rps"], s["wrk_direct_rps"])
    return s
