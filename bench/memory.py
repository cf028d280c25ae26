"""lai's memory over repeated rounds of requests: does it stay flat?

Starts the bench's fakes and ``lai proxy`` exactly as ``bench/run.py`` does (auth on with
a key from ``lai keys create``, the SQLite recorder, /metrics), then runs ``--rounds``
rounds, each of ``--requests`` plain chat requests from ``--clients`` keep-alive
connections (new connections each round, as separate wrk runs open) and ``--streams``
streamed ones, one by one. After start and after each round, once the recorder has
written its backlog (``local_ai_recorder_backlog`` 0) and the proxy has idled
``--settle`` seconds, it reads the proxy's RSS (``/proc/PID/status`` VmRSS) and prints
it with the growth.

    python bench/memory.py                       # 5 rounds x 4,000 requests (~20,000)
    python bench/memory.py --rounds 10 --requests 2000
    python bench/memory.py --tracemalloc /tmp/tm # diagnosis: what grows, by line

``--tracemalloc DIR`` runs the proxy under ``tracemalloc`` (``bench/traced_proxy.py``),
takes a snapshot after each round and prints the 15 places whose allocations grew most
from the second round's snapshot to the last (the first round fills pools and caches
once). Tracing costs time and memory: its RSS figures are not the proxy's.

See bench/README.md ("Memory over rounds").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpload import Connection, Target, timed_stream, uvloop_module  # noqa: E402
from run import (  # noqa: E402
    ROOT,
    Proc,
    create_key,
    drain,
    lai_config,
    rss_mib,
    scrape,
    spawn,
    wait_ready,
)


async def plain_requests(target: Target, clients: int, total: int) -> tuple[int, int]:
    """``total`` plain requests from ``clients`` connections; (ok, errors)."""
    conns = [await Connection.open(target.host, target.port) for _ in range(clients)]
    left = total
    ok = errors = 0

    async def worker(conn: Connection) -> None:
        nonlocal left, ok, errors
        while left > 0:
            left -= 1
            resp = await conn.send(target.plain)
            if resp.status == 200:
                ok += 1
            else:
                errors += 1

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return ok, errors


async def snapshot(directory: Path, pid: int, n: int) -> tracemalloc.Snapshot:
    done = directory / f"snapshot-{n}.done"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline:
            raise SystemExit("bench: the traced proxy wrote no snapshot")
        await asyncio.sleep(0.2)
    return tracemalloc.Snapshot.load(str(directory / f"snapshot-{n}.pickle"))


def grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 15) -> str:
    keep = [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "traceback")
    lines = []
    for stat in stats[:top]:
        frames = [f"{f.filename.replace(str(ROOT) + '/', '')}:{f.lineno}"
                  for f in reversed(stat.traceback)][:4]
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                     + " <- ".join(frames))
    total = sum(s.size_diff for s in stats) / 1024 / 1024
    return f"traced allocations grew {total:+.2f} MiB; most:\n" + "\n".join(lines)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    procs: list[Proc] = []
    rows: list[dict[str, Any]] = []
    traced = Path(args.tracemalloc) if args.tracemalloc else None
    try:
        fast, fast_url = spawn("fake-fast", [py, "-m", "tests.fakes.upstream", "--port", "0",
                                             "--chunks", "3", "--delay", "0"],
                               workdir, "listening on")
        procs.append(fast)
        slow, stream_url = spawn("fake-stream", [py, "-m", "tests.fakes.upstream", "--port",
                                                 "0", "--chunks", "20", "--delay", "0.005"],
                                 workdir, "listening on")
        procs.append(slow)
        config = workdir / "config.toml"
        lai_config(config, fast_url, stream_url, args.clients)
        key = create_key(config)
        argv = [py, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0"]
        if traced is not None:
            traced.mkdir(parents=True, exist_ok=True)
            for old in traced.glob("snapshot-*"):
                old.unlink()
            argv = [py, str(ROOT / "bench" / "traced_proxy.py"), *argv[3:]]
            os.environ["LAI_TRACEMALLOC_DIR"] = str(traced)
        lai, url = spawn("lai", argv, workdir, "lai proxy listening on",
                         timeout=300 if traced else 60)
        procs.append(lai)
        target = Target.for_url("lai", url, model="bench-fast", stream_model="bench-stream",
                                key=key)
        await wait_ready(target)
        await asyncio.sleep(args.settle)
        after_start = rss_mib(lai.pid)
        snaps: list[tracemalloc.Snapshot] = []
        served = 0
        for i in range(args.rounds):
            t0 = time.monotonic()
            ok, errors = await plain_requests(target, args.clients, args.requests)
            seconds = time.monotonic() - t0
            conn = await Connection.open(target.host, target.port)
            try:
                for _ in range(args.streams):
                    await timed_stream(conn, target.stream)
            finally:
                conn.close()
            served += ok + errors + args.streams
            backlog = await scrape(target, "local_ai_recorder_backlog")
            drained = await drain(target, 60)
            await asyncio.sleep(args.settle)
            rss = rss_mib(lai.pid)
            rows.append({"round": i + 1, "requests": served, "ok": ok, "errors": errors,
                         "rps": round(args.requests / seconds, 1),
                         "recorder_backlog": backlog, "recorder_drain_s": drained,
                         "rss_mib": round(rss, 1) if rss else None})
            print(f"round {i + 1}: {served:,} requests so far ({args.requests / seconds:,.0f}"
                  f" req/s, {errors} errors), backlog {backlog} written in {drained} s, "
                  f"RSS {rss:.1f} MiB", file=sys.stderr)
            if traced is not None:
                snaps.append(await snapshot(traced, lai.pid, i + 1))
        code = lai.stop()
    finally:
        for p in reversed(procs):
            p.stop(10)
    rss = [r["rss_mib"] for r in rows if r["rss_mib"] is not None]
    out: dict[str, Any] = {
        "rounds": rows,
        "after_start_mib": round(after_start, 1) if after_start else None,
        "after_last_mib": rss[-1] if rss else None,
        "growth_from_start_mib": round(rss[-1] - after_start, 1) if rss and after_start else None,
        "growth_from_round_2_mib": round(rss[-1] - rss[1], 1) if len(rss) > 1 else None,
        "lai_exit": code,
    }
    if len(snaps) > 1:
        out["tracemalloc"] = grown(snaps[1] if len(snaps) > 2 else snaps[0], snaps[-1])
    return out


def report(res: dict[str, Any]) -> str:
    lines = [f"lai RSS after start: {res['after_start_mib']} MiB"]
    for r in res["rounds"]:
        lines.append(f"after round {r['round']} ({r['requests']:,} requests): "
                     f"{r['rss_mib']} MiB")
    lines.append(f"growth: {res['growth_from_start_mib']:+} MiB from start, "
                 f"{res['growth_from_round_2_mib']:+} MiB from round 2 to the last")
    if "tracemalloc" in res:
        lines.append(res["tracemalloc"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=4000, help="plain requests a round")
    p.add_argument("--streams", type=int, default=30, help="streamed requests a round")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds idle before each RSS reading")
    p.add_argument("--tracemalloc", metavar="DIR", help="diagnosis: see above")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lai-bench-memory-"))
    uv = uvloop_module()
    runner = asyncio.Runner(loop_factory=uv.new_event_loop) if uv else asyncio.Runner()
    try:
        with runner:
            res = runner.run(measure(args, workdir))
    finally:
        if args.keep:
            print(f"bench: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if all(not r["errors"] for r in res["rounds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
