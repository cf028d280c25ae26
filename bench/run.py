"""What lai adds to a request: latency, throughput, streaming delays and memory.

Starts two fake OpenAI-compatible upstreams (``tests/fakes/upstream.py``: a fast one
for plain requests, one that streams ``--chunks`` tokens ``--chunk-delay`` apart) and
``lai proxy`` as a user runs it (auth on with a key from ``lai keys create``, the store
recording to SQLite, /metrics scraped), then measures each figure direct to the fake
and through lai, alternating, in one run. Prints a table and writes JSON.

    python bench/run.py                         # about two minutes
    python bench/run.py --smoke                 # a few seconds; CI (asserts no speed)
    python bench/run.py --wrk                   # also drive 32 clients with wrk
    python bench/run.py --profile /tmp/lai.svg  # py-spy flame graph of lai under load
    python bench/run.py --gateway http://127.0.0.1:4000 --gateway-key sk-... \\
        --upstream-port 9101 --stream-upstream-port 9102   # another gateway

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpload  # noqa: E402
from httpload import (  # noqa: E402
    Connection,
    LoadResult,
    Target,
    load,
    percentile,
    timed,
    timed_stream,
    uvloop_module,
)
from report import machine, summarize, table, targets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

@dataclass
class Plan:
    """How much of each measurement a run does."""

    requests: int = 2000
    """Plain requests at 1 client, each way."""
    streams: int = 40
    """Streamed requests at 1 client, each way."""
    rounds: int = 5
    """Load rounds at ``clients`` clients, each way."""
    seconds: float = 5.0
    clients: int = 32
    warmup: int = 200
    warmup_seconds: float = 1.0
    settle: float = 1.0
    """Seconds idle after start (and 0.5 x after each load round) before RSS is read."""


SMOKE = Plan(requests=30, streams=3, rounds=2, seconds=0.5, warmup=10, warmup_seconds=0.3,
             settle=0.2)


# ---------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait (graceful shutdown); SIGKILL after ``timeout``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def spawn(
    name: str, argv: list[str], workdir: Path, marker: str, timeout: float = 60.0
) -> tuple[Proc, str]:
    """Start ``argv`` and wait for a stdout line containing ``marker``; returns the process
    and the last word of that line (the URL both servers print)."""
    log = workdir / f"{name}.log"
    err = log.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    popen = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=env)
    proc = Proc(name, popen, log)
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([popen.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(popen.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if marker in line:
                    return proc, line.rsplit(" ", 1)[1].strip()
        elif popen.poll() is not None:
            break
    proc.stop(5)
    raise SystemExit(f"bench: {name} did not start ({' '.join(argv)}):\n"
                     f"{buf.decode(errors='replace')}{proc.tail()}")


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (Linux), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / MIB
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's RSS every ``interval`` s while running; keeps the maximum."""

    def __init__(self, pid: int | None, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def sample(self) -> float | None:
        if self.pid is None:
            return None
        value = rss_mib(self.pid)
        if value is not None and (self.peak is None or value > self.peak):
            self.peak = value
        return value

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample()


def lai_config(path: Path, fast_url: str, stream_url: str, clients: int) -> None:
    """The configuration a user runs: auth on, the store on SQLite, two local boxes."""
    path.write_text(textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        database_url = "sqlite:///data/lai.db"
        data_dir = "data"
        auth = true
        queue_timeout = 30
        queue_max_size = 1000

        [[providers]]
        id = "fast-box"
        type = "local"
        endpoint = "{fast_url}"
        max_concurrent = {max(64, clients * 2)}
        health_check_interval = 30

        [[providers]]
        id = "stream-box"
        type = "local"
        endpoint = "{stream_url}"
        max_concurrent = 8
        health_check_interval = 30

        [[models]]
        id = "bench-fast"
        provider_id = "fast-box"
        upstream_id = "fake-model"
        context_window = 32768
        is_default = true

        [[models]]
        id = "bench-stream"
        provider_id = "stream-box"
        upstream_id = "fake-model"
        context_window = 32768
        is_default = true
    """))


def create_key(config: Path) -> str | None:
    """A key from ``lai keys create``, as a user makes one; None (and a warning) if the
    command fails."""
    done = subprocess.run(
        [sys.executable, "-m", "lai.cli", "keys", "create", "bench", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for line in done.stdout.splitlines():
        if re.fullmatch(r"lai_[0-9a-f]{32}", line.strip()):
            return line.strip()
    print(f"bench: warning: `lai keys create` failed (exit {done.returncode}); "
          f"requests go without a key:\n{done.stderr.strip()[-800:]}", file=sys.stderr)
    return None


# ---------------------------------------------------------------------- small requests


async def simple(host: str, port: int, method: str, path: str,
                 headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
    conn = await Connection.open(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
                 f"Content-Length: {len(body)}", "Content-Type: application/json"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        resp = await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return resp.status, bytes(resp.body)
    finally:
        conn.close()


async def wait_ready(target: Target, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open(target.host, target.port)
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        conn.close()
        return
    raise SystemExit(f"bench: {target.name} not reachable: {last}")


async def drain(target: Target, limit: float) -> float | None:
    """Seconds until the target's recorder backlog is empty (at most ``limit``); None
    when it has no such metric."""
    start = time.monotonic()
    while True:
        backlog = await scrape(target, "local_ai_recorder_backlog")
        if backlog is None:
            return None
        waited = time.monotonic() - start
        if not backlog or waited >= limit:
            return round(waited, 2)
        await asyncio.sleep(0.1)


async def scrape(target: Target, name: str) -> float | None:
    """One metric's total from the target's /metrics; None when it has none."""
    try:
        status, text = await simple(target.host, target.port, "GET", "/metrics")
    except (OSError, httpload.HTTPError):
        return None
    return metric_total(text.decode(errors="replace"), name) if status == 200 else None


def metric_total(text: str, name: str) -> float | None:
    """Sum of every sample of ``name`` in a Prometheus exposition; None when absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            seen = True
            total += float(line.rsplit(" ", 1)[1])
    return total if seen else None


# ---------------------------------------------------------------------- measurements


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def one_client(direct: Target, lai: Target, n: int) -> dict[str, Any]:
    """Plain requests at 1 client, alternating direct and lai one by one."""
    times: dict[str, list[float]] = {"direct": [], "lai": []}
    conns = {"direct": await Connection.open(direct.host, direct.port),
             "lai": await Connection.open(lai.host, lai.port)}
    raws = {"direct": direct.plain, "lai": lai.plain}
    try:
        for i in range(n):
            order = ("direct", "lai") if i % 2 == 0 else ("lai", "direct")
            for side in order:
                times[side].append(await timed(conns[side], raws[side]))
    finally:
        for c in conns.values():
            c.close()
    out: dict[str, Any] = {"requests": n}
    for side, values in times.items():
        out[side] = {"p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99)),
                     "mean_ms": ms(statistics.fmean(values))}
    return out


async def streams(direct: Target, direct_burst: Target, lai: Target, n: int) -> dict[str, Any]:
    """Streamed requests at 1 client, alternating direct and lai: time to the first token
    and gaps between tokens when tokens come apart (``--chunk-delay``), and time to the
    first token when they all come at once (no idle wait before it: see bench/README.md)."""
    ttft: dict[str, list[float]] = {"direct": [], "lai": []}
    burst: dict[str, list[float]] = {"direct": [], "lai": []}
    gaps: dict[str, list[float]] = {"direct": [], "lai": []}
    conns = {"direct": await Connection.open(direct.host, direct.port),
             "direct_burst": await Connection.open(direct_burst.host, direct_burst.port),
             "lai": await Connection.open(lai.host, lai.port)}
    raws = {"direct": direct.stream, "lai": lai.stream}
    bursts = {"direct": (conns["direct_burst"], direct_burst.burst),
              "lai": (conns["lai"], lai.burst)}
    try:
        for i in range(n):
            order = ("direct", "lai") if i % 2 == 0 else ("lai", "direct")
            for side in order:
                t = await timed_stream(conns[side], raws[side])
                ttft[side].append(t.ttft)
                gaps[side].extend(t.gaps)
        # Back to back, as the plain requests at 1 client: no idle wait before a token.
        for i in range(n * 5):
            order = ("direct", "lai") if i % 2 == 0 else ("lai", "direct")
            for side in order:
                t = await timed_stream(*bursts[side])
                burst[side].append(t.ttft)
    finally:
        for c in conns.values():
            c.close()
    out: dict[str, Any] = {"streams": n}
    for side in ("direct", "lai"):
        out[side] = {
            "ttft_p50_ms": ms(percentile(ttft[side], 50)),
            "ttft_p99_ms": ms(percentile(ttft[side], 99)),
            "gap_p50_ms": ms(percentile(gaps[side], 50)),
            "gap_p99_ms": ms(percentile(gaps[side], 99)),
            "burst_ttft_p50_ms": ms(percentile(burst[side], 50)),
        }
    return out


def summarize_load(r: LoadResult) -> dict[str, Any]:
    return {"rps": round(r.rps, 1), "p50_ms": ms(percentile(r.latencies, 50)),
            "p99_ms": ms(percentile(r.latencies, 99)), "ok": r.ok, "errors": r.errors,
            "first_error": r.first_error}


@dataclass
class LoadRounds:
    rounds: list[dict[str, Any]] = field(default_factory=list)
    rss_under_load: list[float | None] = field(default_factory=list)
    rss_after_load: list[float | None] = field(default_factory=list)


async def load_rounds(direct: Target, lai: Target, plan: Plan, pid: int | None) -> LoadRounds:
    """``plan.rounds`` rounds of ``plan.clients`` clients, direct and lai alternating
    (the order flips each round); lai's RSS sampled during and after each round."""
    out = LoadRounds()
    for i in range(plan.rounds):
        order = ("direct", "lai") if i % 2 == 0 else ("lai", "direct")
        row: dict[str, Any] = {"round": i + 1}
        for side in order:
            if side == "lai":
                with RssSampler(pid) as sampler:
                    result = await load(lai, plan.clients, plan.seconds)
                out.rss_under_load.append(sampler.peak)
                backlog = await scrape(lai, "local_ai_recorder_backlog")
                drained = await drain(lai, plan.settle * 15)
                await asyncio.sleep(plan.settle / 2)
                out.rss_after_load.append(rss_mib(pid) if pid else None)
            else:
                result = await load(direct, plan.clients, plan.seconds)
            row[side] = summarize_load(result)
            if side == "lai":
                # Records the store had not written when the round ended: memory owed,
                # not leaked. After-load RSS is read once they are written.
                row["lai"]["recorder_backlog"] = backlog
                row["lai"]["recorder_drain_s"] = drained
        out.rounds.append(row)
    return out


def run_wrk(target: Target, clients: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """32 clients driven by wrk (C, one thread): a check on the Python generator."""
    head, _, body = target.plain.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {k: v for k, v in (ln.split(": ", 1) for ln in lines[1:])
               if k.lower() not in ("host", "content-length")}
    script = workdir / f"wrk-{target.name}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    )
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
         str(script), f"http://{target.host}:{target.port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    text = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    requests = re.search(r"(\d+) requests in", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": float(rps.group(1)) if rps else None,
        "p50_ms": round(float(p50.group(1)) * scale[p50.group(2)], 3) if p50 else None,
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 3) if p99 else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "requests": int(requests.group(1)) if requests else 0,
    }


# ---------------------------------------------------------------------- main


async def measure(args: argparse.Namespace, plan: Plan, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    fast_argv = [py, "-m", "tests.fakes.upstream", "--port", str(args.upstream_port),
                 "--chunks", "3", "--delay", "0"]
    stream_argv = [py, "-m", "tests.fakes.upstream", "--port", str(args.stream_upstream_port),
                   "--chunks", str(args.chunks), "--delay", str(args.chunk_delay)]
    procs: list[Proc] = []
    errors: list[str] = []
    lai_proc: Proc | None = None
    try:
        if args.running_upstreams:
            # Started beforehand (a gateway that checks its upstreams at start needs them).
            fast_url = f"http://127.0.0.1:{args.upstream_port}"
            stream_url = f"http://127.0.0.1:{args.stream_upstream_port}"
        else:
            fast, fast_url = spawn("fake-fast", fast_argv, workdir, "listening on")
            procs.append(fast)
            slow, stream_url = spawn("fake-stream", stream_argv, workdir, "listening on")
            procs.append(slow)

        config = workdir / "config.toml"
        if args.gateway:
            url, key, pid = args.gateway, args.gateway_key, args.gateway_pid
            name = args.gateway_name
            model, stream_model = args.gateway_model, args.gateway_stream_model
        else:
            lai_config(config, fast_url, stream_url, plan.clients)
            key = create_key(config)
            lai_proc, url = spawn("lai", [py, "-m", "lai.cli", "proxy", "--config", str(config),
                                          "--port", "0"], workdir, "lai proxy listening on")
            procs.append(lai_proc)
            pid, name = lai_proc.pid, "lai"
            model, stream_model = "bench-fast", "bench-stream"

        direct = Target.for_url("direct", fast_url, model="fake-model",
                                stream_model="fake-model", key=None)
        direct_stream = Target.for_url("direct", stream_url, model="fake-model",
                                       stream_model="fake-model", key=None)
        extra = dict(h.split(":", 1) for h in args.gateway_header or []) if args.gateway else {}
        gw = Target.for_url(name, url, model=model, stream_model=stream_model, key=key,
                            headers={k.strip(): v.strip() for k, v in extra.items()})
        await wait_ready(gw)
        await asyncio.sleep(plan.settle)
        after_start = rss_mib(pid) if pid else None

        features: dict[str, Any] = {"auth": None, "metrics": None, "recorded_rows": None,
                                    "lai_requests": 0}
        if not args.gateway:
            status, _ = await simple(gw.host, gw.port, "POST", "/v1/chat/completions",
                                     body=b'{"model":"bench-fast","messages":[]}')
            features["auth"] = "on (401 without a key)" if status == 401 else f"OFF ({status})"
            status, _ = await simple(gw.host, gw.port, "GET", "/metrics")
            features["metrics"] = "scraped" if status == 200 else f"OFF ({status})"

        # Warm up: connection pools filled, lazy imports done, caches hot.
        await one_client(direct, gw, plan.warmup)
        await load(direct, plan.clients, plan.warmup_seconds)
        warm = await load(gw, plan.clients, plan.warmup_seconds)
        if warm.errors:
            errors.append(f"warm-up through {name}: {warm.errors} errors, {warm.first_error}")
        lai_requests = plan.warmup + warm.ok + warm.errors

        latency = await one_client(direct, gw, plan.requests)
        lai_requests += plan.requests
        try:
            stream = await streams(direct_stream, direct, gw, plan.streams)
        except httpload.HTTPError as exc:  # a gateway that cannot stream (bench/README.md)
            errors.append(f"streams through {name}: {exc}")
            none = dict.fromkeys(("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms",
                                  "burst_ttft_p50_ms"))
            stream = {"streams": 0, "direct": dict(none), "lai": dict(none)}
        lai_requests += 6 * plan.streams
        rounds = await load_rounds(direct, gw, plan, pid)
        for r in rounds.rounds:
            for side in ("direct", "lai"):
                if r[side]["errors"]:
                    errors.append(f"round {r['round']} {side}: {r[side]['errors']} errors, "
                                  f"{r[side]['first_error']}")
            lai_requests += r["lai"]["ok"] + r["lai"]["errors"]

        wrk: dict[str, Any] | None = None
        if args.wrk:
            if shutil.which("wrk") is None:
                errors.append("--wrk given but wrk is not installed (apt-get install wrk)")
            else:
                # direct, lai, direct: the two direct runs bracket lai's.
                wrk = {}
                for key_, t in (("direct", direct), ("lai", gw), ("direct_2", direct)):
                    wrk[key_] = await asyncio.to_thread(run_wrk, t, plan.clients,
                                                        plan.seconds, workdir)
                lai_requests += wrk["lai"]["requests"]
                if wrk["lai"]["non_2xx"] or wrk["direct"]["non_2xx"]:
                    errors.append(f"wrk: non-2xx responses {wrk}")

        if args.profile and pid:
            lai_requests += await profile(gw, plan, pid, Path(args.profile))

        if not args.gateway:
            status, text = await simple(gw.host, gw.port, "GET", "/metrics")
            counted = metric_total(text.decode(errors="replace"), "local_ai_requests_total")
            if status == 200:
                features["metrics"] = ("on" if counted else "scraped, no request counted"
                                       ) + f" (local_ai_requests_total {counted})"
        after_all = rss_mib(pid) if pid else None

        if lai_proc is not None:
            code = lai_proc.stop()
            if code not in (0, None):
                errors.append(f"lai proxy exited {code}: {lai_proc.tail(10)}")
            features["recorded_rows"] = count_rows(workdir / "data" / "lai.db")
            features["lai_requests"] = lai_requests
    finally:
        for p in reversed(procs):
            p.stop(10)

    s = summarize(latency, stream, rounds.rounds, wrk)
    after = [v for v in rounds.rss_after_load if v is not None]
    peak = max((v for v in rounds.rss_under_load if v is not None), default=None)
    memory: dict[str, Any] = {
        "after_start_mib": round(after_start, 1) if after_start else None,
        "under_load_peak_mib": round(peak, 1) if peak is not None else None,
        "after_load_mib": [round(v, 1) for v in after],
        "after_all_mib": round(after_all, 1) if after_all else None,
        # The first round fills pools, caches and the allocator's arenas once; a leak
        # shows as growth from the second round on.
        "warmup_growth_mib": round(after[1] - after[0], 1) if len(after) > 1 else None,
        "growth_mib": round(after[-1] - after[min(1, len(after) - 1)], 1) if after else None,
    }
    return {
        "machine": machine(),
        "plan": dataclasses.asdict(plan),
        "upstream": {"stream_chunks": args.chunks, "chunk_delay_s": args.chunk_delay},
        "gateway": {"name": name, "url": url},
        "features": features,
        "latency_1_client": latency,
        "streams_1_client": stream,
        "load": {"clients": plan.clients, "seconds": plan.seconds, "rounds": rounds.rounds},
        "wrk": wrk,
        "memory": memory,
        "summary": s,
        "targets": targets(s, memory),
        "errors": errors,
    }


async def profile(gw: Target, plan: Plan, pid: int, out: Path) -> int:
    """A py-spy recording of the proxy during one extra load round (not measured)."""
    if shutil.which("py-spy") is None:
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 0
    seconds = max(2.0, plan.seconds)
    fmt_ = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
    spy = await asyncio.create_subprocess_exec(
        "py-spy", "record", "-p", str(pid), "-o", str(out), "-f", fmt_, "-r", "250",
        "-d", str(int(seconds) + 1), "--nonblocking", "--threads",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    result = await load(gw, plan.clients, seconds)
    await asyncio.wait_for(spy.wait(), 60)
    print(f"bench: profile of {result.ok} requests written to {out}", file=sys.stderr)
    return result.ok + result.errors


def count_rows(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few seconds; figures meaningless")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    p.add_argument("--requests", type=int, help="plain requests at 1 client, each way")
    p.add_argument("--streams", type=int, help="streamed requests at 1 client, each way")
    p.add_argument("--rounds", type=int, help="load rounds, each way")
    p.add_argument("--seconds", type=float, help="seconds per load round")
    p.add_argument("--clients", type=int, help="concurrent clients in load rounds (32)")
    p.add_argument("--chunks", type=int, default=20, help="tokens per streamed answer")
    p.add_argument("--chunk-delay", type=float, default=0.005,
                   help="seconds the fake waits before each token")
    p.add_argument("--wrk", action="store_true", help="also drive the load with wrk")
    p.add_argument("--profile", metavar="PATH",
                   help="py-spy record lai during an extra load round (.svg, .json, or raw)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, db)")
    g = p.add_argument_group("another gateway instead of lai")
    g.add_argument("--gateway", metavar="URL", help="its base URL; the bench starts no lai")
    g.add_argument("--gateway-name", default="gateway")
    g.add_argument("--gateway-key", help="sent as Authorization: Bearer KEY")
    g.add_argument("--gateway-model", default="bench-fast",
                   help="model name it routes to the fast fake (--upstream-port)")
    g.add_argument("--gateway-stream-model", default="bench-stream",
                   help="model name it routes to the streaming fake (--stream-upstream-port)")
    g.add_argument("--gateway-pid", type=int, help="its process id, for memory figures")
    g.add_argument("--gateway-header", action="append", metavar="'NAME: VALUE'",
                   help="a header sent with every request to it (repeatable)")
    g.add_argument("--running-upstreams", action="store_true",
                   help="the fakes already run on --upstream-port and "
                        "--stream-upstream-port (python -m tests.fakes.upstream); start none")
    g.add_argument("--upstream-port", type=int, default=0, help="port of the fast fake (0: any)")
    g.add_argument("--stream-upstream-port", type=int, default=0,
                   help="port of the streaming fake (0: any)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = SMOKE if args.smoke else Plan()
    overrides = {name: getattr(args, name)
                 for name in ("requests", "streams", "rounds", "seconds", "clients")
                 if getattr(args, name) is not None}
    plan = dataclasses.replace(plan, **overrides)
    workdir = Path(tempfile.mkdtemp(prefix="lai-bench-"))
    uv = uvloop_module()
    runner = asyncio.Runner(loop_factory=uv.new_event_loop) if uv else asyncio.Runner()
    try:
        with runner:
            res = runner.run(measure(args, plan, workdir))
    finally:
        if args.keep:
            print(f"bench: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    res["smoke"] = bool(args.smoke)
    print(table(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
