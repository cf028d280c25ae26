"""What lai adds as an outside client measures it (issue 16): wrk against a fast upstream.

Starts the fast fake (``bench/fastfake.py``: uvicorn + uvloop + httptools) and ``lai proxy``
as a subprocess configured as issue 16 does it (auth on with a key from ``lai keys create``,
the SQLite recorder, metrics, one provider with ``max_concurrent = 1000``, everything else
default), then drives both with ``wrk -t1`` and the small non-streamed body, direct and
through lai alternating, at 1 client and at 32 clients: the medians of ``--runs`` runs of
``--seconds`` each after a warm-up. lai's CPU per request is the utime + stime of the whole
process (every thread, ``/proc/PID/stat``) over a run divided by the requests wrk counted;
peak RSS is ``VmHWM`` after the 1-client runs and after the 32-client runs. Then
``--streams`` sequential streamed requests each way (a Python client on its own
connection) for the time to the first content token.

    python bench/outside.py                       # ~60 s; the table of issue 16
    python bench/outside.py --profile /tmp/p.txt  # also py-spy lai at 1 client (raw/svg/json)
    python bench/outside.py --smoke               # a few seconds; figures meaningless

See bench/README.md ("As an outside client measures it").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpload import Connection, Target, timed_stream, uvloop_module  # noqa: E402
from run import ROOT, Proc, count_rows, create_key, metric_total, simple, spawn  # noqa: E402

BODY = {"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def config_text(upstream: str, data_dir: Path | None = None) -> str:
    """Issue 16's configuration: auth on, SQLite store, one provider, defaults otherwise
    (``bench/versus.py`` serves every tree with it too)."""
    extra = f'data_dir = "{data_dir}"\n' if data_dir is not None else ""
    return textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        auth = true
        {extra}
        [[providers]]
        id = "fast-box"
        type = "local"
        endpoint = "{upstream}"
        max_concurrent = 1000

        [[models]]
        id = "bench-fast"
        provider_id = "fast-box"
        upstream_id = "fake-model"
        is_default = true
    """)


def lai_config(path: Path, upstream: str) -> None:
    path.write_text(config_text(upstream))


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of the whole process (all its threads), or of its thread ``tid``
    (the main thread, lai's event loop, is ``tid == pid``), in seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_mib(pid: int, field: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wrk_script(workdir: Path, name: str, model: str, key: str | None) -> Path:
    script = workdir / f"wrk-{name}.lua"
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps({'model': model, **BODY}))}\n"
        + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    )
    return script


_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, clients: int, seconds: float, pid: int | None) -> dict[str, Any]:
    """One wrk run; with ``pid``, that process's CPU seconds over the run."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    loop0 = cpu_seconds(pid, pid) if pid else 0.0
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(script), url + "/v1/chat/completions"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    cpu = (cpu_seconds(pid) - cpu0) if pid else None
    loop = (cpu_seconds(pid, pid) - loop0) if pid else None
    text = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    n = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors:.*", text)
    requests = int(n.group(1)) if n else 0
    return {
        "rps": float(rps.group(1)) if rps else None,
        "p50_ms": round(float(p50.group(1)) * _SCALE[p50.group(2)], 3) if p50 else None,
        "p99_ms": round(float(p99.group(1)) * _SCALE[p99.group(2)], 3) if p99 else None,
        "requests": requests,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(0) if errs else None,
        "cpu_s": round(cpu, 3) if cpu is not None else None,
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3) if cpu and requests else None,
        # The main thread is the event loop; the others are the recorder's writer and
        # the loop's to_thread pool (key lookups).
        "loop_cpu_ms_per_request": (round(loop * 1000 / requests, 3)
                                    if loop is not None and requests else None),
        "other_threads_cpu_ms_per_request": (round((cpu - loop) * 1000 / requests, 3)
                                             if cpu is not None and loop is not None
                                             and requests else None),
        "raw": text if done.returncode or not requests else None,
    }


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


@dataclasses.dataclass
class Plan:
    runs: int = 2
    seconds: float = 5.0
    warmup_seconds: float = 2.0
    streams: int = 30


SMOKE = Plan(runs=1, seconds=1.0, warmup_seconds=1.0, streams=3)


def stream_request(target: Target, model: str, key: str | None) -> bytes:
    payload = json.dumps({"model": model, **BODY, "stream": True}).encode()
    head = ["POST /v1/chat/completions HTTP/1.1", f"Host: {target.host}:{target.port}",
            "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def streams(targets: dict[str, tuple[Target, bytes]], n: int) -> dict[str, list[float]]:
    """``n`` streamed requests each way, one at a time, alternating: time to first token."""
    out: dict[str, list[float]] = {side: [] for side in targets}
    conns = {side: await Connection.open(t.host, t.port) for side, (t, _) in targets.items()}
    try:
        for i in range(n):
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            for side in order:
                timing = await timed_stream(conns[side], targets[side][1])
                out[side].append(timing.ttft)
    finally:
        for c in conns.values():
            c.close()
    return out


def measure(args: argparse.Namespace, plan: Plan, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    procs: list[Proc] = []
    errors: list[str] = []
    try:
        fake, fake_url = spawn("fastfake", [py, str(ROOT / "bench" / "fastfake.py"),
                                            "--port", "0"], workdir, "fastfake listening on")
        procs.append(fake)
        config = workdir / "config.toml"
        lai_config(config, fake_url)
        key = create_key(config)
        lai, lai_url = spawn("lai", [py, "-m", "lai.cli", "proxy", "--config", str(config),
                                     "--port", "0"], workdir, "lai proxy listening on")
        procs.append(lai)
        time.sleep(1.0)
        rss_start = status_mib(lai.pid, "VmRSS")
        sides = {
            "direct": (fake_url, wrk_script(workdir, "direct", "fake-model", None), fake.pid),
            "lai": (lai_url, wrk_script(workdir, "lai", "bench-fast", key), lai.pid),
        }

        def one(side: str, clients: int, seconds: float) -> dict[str, Any]:
            url, script, pid = sides[side]
            r = wrk(url, script, clients, seconds, pid)
            if r["non_2xx"] or r["socket_errors"] or not r["requests"]:
                errors.append(f"wrk {side} -c{clients}: {r['non_2xx']} non-2xx, "
                              f"{r['socket_errors']}, {r['raw']}")
            return r

        results: dict[int, dict[str, list[dict[str, Any]]]] = {}
        hwm: dict[int, float | None] = {}
        profiled: str | None = None
        for clients in (1, 32):
            for side in ("direct", "lai"):
                one(side, clients, plan.warmup_seconds)
            runs: dict[str, list[dict[str, Any]]] = {"direct": [], "lai": []}
            for i in range(plan.runs):
                for side in (("direct", "lai") if i % 2 == 0 else ("lai", "direct")):
                    runs[side].append(one(side, clients, plan.seconds))
            results[clients] = runs
            hwm[clients] = status_mib(lai.pid, "VmHWM")
            if clients == 1 and args.profile:
                profiled = profile(lai.pid, sides["lai"], plan, Path(args.profile))

        rss_fake = status_mib(fake.pid, "VmHWM")
        uv = uvloop_module()
        runner = asyncio.Runner(loop_factory=uv.new_event_loop) if uv else asyncio.Runner()
        direct_t = Target.for_url("direct", fake_url, model="fake-model",
                                  stream_model="fake-model", key=None)
        lai_t = Target.for_url("lai", lai_url, model="bench-fast", stream_model="bench-fast",
                               key=key)
        with runner:
            ttft = runner.run(streams({
                "direct": (direct_t, stream_request(direct_t, "fake-model", None)),
                "lai": (lai_t, stream_request(lai_t, "bench-fast", key)),
            }, plan.streams))
            status, _ = runner.run(simple(lai_t.host, lai_t.port, "POST",
                                          "/v1/chat/completions",
                                          body=b'{"model":"bench-fast","messages":[]}'))
            auth = "on (401 without a key)" if status == 401 else f"OFF ({status})"
            status, text = runner.run(simple(lai_t.host, lai_t.port, "GET", "/metrics"))
            counted = metric_total(text.decode(errors="replace"), "local_ai_requests_total")
        rss_end = status_mib(lai.pid, "VmRSS")
        code = lai.stop()
        if code not in (0, None):
            errors.append(f"lai proxy exited {code}: {lai.tail(10)}")
        rows = count_rows(workdir / "data" / "lai.db")
    finally:
        for p in reversed(procs):
            p.stop(10)

    return {
        "plan": dataclasses.asdict(plan),
        "uptime_before": args.uptime_before,
        "uptime_after": Path("/proc/loadavg").read_text().split()[:3],
        "results": {str(c): r for c, r in results.items()},
        "ttft_ms": {side: [round(v * 1000, 3) for v in vals] for side, vals in ttft.items()},
        "rss_mib": {"lai_after_start": rss_start, "lai_peak_1_client": hwm[1],
                    "lai_peak_32_clients": hwm[32], "lai_at_end": rss_end,
                    "direct_peak": rss_fake},
        "features": {"auth": auth, "metrics_requests_total": counted, "recorded_rows": rows},
        "profile": profiled,
        "errors": errors,
    }


def profile(pid: int, side: tuple[str, Path, int], plan: Plan, out: Path) -> str | None:
    """py-spy, every thread and idle samples, during one extra 1-client run of lai."""
    if shutil.which("py-spy") is None:
        return None
    url, script, _ = side
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-o", str(out), "-f", fmt, "-r", "500",
         "-d", str(int(plan.seconds) + 1), "--threads", "--idle", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = wrk(url, script, 1, plan.seconds, pid)
    spy.wait(60)
    return f"{out} ({r['requests']} requests, {r['cpu_ms_per_request']} ms CPU each)"


def summarize(res: dict[str, Any]) -> dict[str, float | None]:
    """The figures of the table (medians over the runs)."""
    r1, r32 = res["results"]["1"], res["results"]["32"]

    def med(runs: list[dict[str, Any]], key: str) -> float | None:
        return median([r[key] for r in runs])

    def sub(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 3)

    out: dict[str, float | None] = {}
    for side in ("direct", "lai"):
        out[f"{side}_p50_ms_1"] = med(r1[side], "p50_ms")
        out[f"{side}_rps_1"] = med(r1[side], "rps")
        out[f"{side}_rps_32"] = med(r32[side], "rps")
        out[f"{side}_p99_ms_32"] = med(r32[side], "p99_ms")
        out[f"{side}_cpu_ms_1"] = med(r1[side], "cpu_ms_per_request")
        out[f"{side}_cpu_ms_32"] = med(r32[side], "cpu_ms_per_request")
        for clients, runs in (("1", r1), ("32", r32)):
            out[f"{side}_loop_cpu_ms_{clients}"] = med(runs[side], "loop_cpu_ms_per_request")
            out[f"{side}_other_cpu_ms_{clients}"] = med(runs[side],
                                                        "other_threads_cpu_ms_per_request")
        ttft = res["ttft_ms"][side]
        out[f"{side}_ttft_ms"] = round(statistics.median(ttft), 3) if ttft else None
    out["added_p50_ms_1"] = sub(out["lai_p50_ms_1"], out["direct_p50_ms_1"])
    out["added_ttft_ms"] = sub(out["lai_ttft_ms"], out["direct_ttft_ms"])
    d32, l32 = out["direct_rps_32"], out["lai_rps_32"]
    out["ratio_rps_32"] = round(l32 / d32, 3) if d32 and l32 is not None else None
    return out


def table(res: dict[str, Any]) -> str:
    s, rss = res["summary"], res["rss_mib"]

    def f(v: float | None, spec: str = ".2f") -> str:
        return "-" if v is None else format(v, spec)

    def plus(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    rows = [
        "| | direct | lai | lai added |",
        "| --- | ---: | ---: | ---: |",
        f"| p50 latency, 1 client | {f(s['direct_p50_ms_1'])} ms | {f(s['lai_p50_ms_1'])} ms "
        f"| {plus(s['added_p50_ms_1'])} ms |",
        f"| req/s, 1 client | {f(s['direct_rps_1'], ',.0f')} | {f(s['lai_rps_1'], ',.0f')} | |",
        f"| req/s, 32 clients | {f(s['direct_rps_32'], ',.0f')} | {f(s['lai_rps_32'], ',.0f')} "
        f"| {f(s['ratio_rps_32'], '.3f')} of direct |",
        f"| p99 latency, 32 clients | {f(s['direct_p99_ms_32'])} ms | "
        f"{f(s['lai_p99_ms_32'])} ms | |",
        f"| CPU per request, 1 client | {f(s['direct_cpu_ms_1'])} ms | "
        f"{f(s['lai_cpu_ms_1'])} ms | |",
        f"| CPU per request, 32 clients | {f(s['direct_cpu_ms_32'])} ms | "
        f"{f(s['lai_cpu_ms_32'])} ms | |",
        f"| of it lai's event loop thread / other threads (recorder), 1 client | | "
        f"{f(s['lai_loop_cpu_ms_1'], '.3f')} / {f(s['lai_other_cpu_ms_1'], '.3f')} ms | |",
        f"| of it lai's event loop thread / other threads (recorder), 32 clients | | "
        f"{f(s['lai_loop_cpu_ms_32'], '.3f')} / {f(s['lai_other_cpu_ms_32'], '.3f')} ms | |",
        f"| peak RSS | {f(rss['direct_peak'], '.0f')} MiB | "
        f"{f(rss['lai_peak_1_client'], '.0f')} (1 client) / "
        f"{f(rss['lai_peak_32_clients'], '.0f')} MiB (32) | |",
        f"| time to first token, {len(res['ttft_ms']['lai'])} sequential streams | "
        f"{f(s['direct_ttft_ms'])} ms | {f(s['lai_ttft_ms'])} ms | "
        f"{plus(s['added_ttft_ms'])} ms |",
    ]
    feats = res["features"]
    notes = [
        f"lai RSS: {f(rss['lai_after_start'], '.1f')} MiB after start, "
        f"{f(rss['lai_at_end'], '.1f')} MiB at the end",
        f"features: auth {feats['auth']}; requests in the SQLite file after SIGTERM "
        f"{feats['recorded_rows']}, counted by local_ai_requests_total "
        f"{feats['metrics_requests_total']}",
        f"load average (1, 5, 15 min) before {' '.join(res['uptime_before'])}, "
        f"after {' '.join(res['uptime_after'])}",
    ]
    if res["profile"]:
        notes.append(f"profile: {res['profile']}")
    if res["errors"]:
        notes += ["ERRORS:"] + res["errors"]
    return "\n".join(rows + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few seconds; figures meaningless")
    p.add_argument("--runs", type=int, help="runs each way at each client count (2)")
    p.add_argument("--seconds", type=float, help="seconds per wrk run (5)")
    p.add_argument("--streams", type=int, help="streamed requests each way (30)")
    p.add_argument("--profile", metavar="PATH",
                   help="py-spy record lai during an extra 1-client run (.svg, .json, raw)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "outside.json"))
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    plan = SMOKE if args.smoke else Plan()
    plan = dataclasses.replace(plan, **{k: getattr(args, k) for k in ("runs", "seconds",
                                                                       "streams")
                                        if getattr(args, k) is not None})
    args.uptime_before = Path("/proc/loadavg").read_text().split()[:3]
    workdir = Path(tempfile.mkdtemp(prefix="lai-outside-"))
    try:
        res = measure(args, plan, workdir)
    finally:
        if args.keep:
            print(f"bench: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    res["summary"] = summarize(res)
    print(table(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
