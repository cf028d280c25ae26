"""Does the recorder keep up? A sustained flood of finished requests, its backlog sampled.

Drives lai's ``Recorder`` (``lai.store.recorder``) in-process, configured as
``lai proxy`` builds it (``lai.runtime.build_runtime``: linger 0.2 s, the default queue
and batch size), on a uvloop event loop, with records made by ``record_from_event`` from
``RequestFinished`` events like the ones the proxy emits for the bench's chat request
(one user message in, one assistant message out, a new conversation each). It submits
``--rate`` records a second for ``--seconds`` seconds, on schedule, through the same
``observe`` the engine's event bus calls; samples ``recorder.backlog`` (the value
``local_ai_recorder_backlog`` exports) every 0.1 s; then reports the peak backlog and
how long after the load ended the backlog was empty.

``--loop-cost-us`` burns that much CPU on the event loop per request, standing in for
the proxy's own work per request (HTTP parsing, routing, the upstream call): the
recorder's worker thread competes with it for the GIL as it does in ``lai proxy``.

In-process rather than through the proxy: on the 2-core shared machine ``lai proxy``
itself serves ~1,200-2,000 requests a second at 32 clients, so driving it cannot hold
2,000 a second for a minute; and the figure asked for is the recorder's.

    python bench/recorder.py                         # 2,000/s for 60 s, SQLite
    python bench/recorder.py --loop-cost-us 250      # with the proxy's work on the loop
    python bench/recorder.py --database-url postgresql+psycopg://user@127.0.0.1/db
    python bench/recorder.py --smoke                 # a few seconds; asserts nothing

See bench/README.md ("The recorder under a flood").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpload import uvloop_module  # noqa: E402

from lai.engine.events import RequestFinished  # noqa: E402
from lai.engine.types import RequestContext, Usage, new_request_id  # noqa: E402
from lai.proxy.context import new_conversation_id  # noqa: E402
from lai.store.db import open_store  # noqa: E402
from lai.store.recorder import Recorder  # noqa: E402


def event(i: int) -> RequestFinished:
    """A finished request as the proxy reports the bench's chat request."""
    # Ids as lai makes them (time-ordered: see lai.engine.types.time_ordered_hex).
    ctx = RequestContext(
        request_id=new_request_id(), key_name="bench", key_prefix="lai_0123",
        conversation_id=new_conversation_id(), endpoint="chat.completions",
    )
    now = time.time()
    return RequestFinished(
        context=ctx, model_requested="bench-fast", model_id="bench-fast",
        provider_id="fast-box", failover_from=(), streaming=False, status="success",
        http_status=200, error_code=None, error_message=None,
        usage=Usage(prompt_tokens=9, completion_tokens=12), cost_usd=0.0,
        started_at=now - 0.002, queue_ms=0.01, ttft_ms=None, duration_ms=1.8,
        upstream_ms=0.9,
        request_messages=({"role": "user", "content": f"Say hello {i}"},),
        response_message={"role": "assistant", "content": "Hello! How can I help you today?"},
        finish_reason="stop",
    )


def burn(us: float) -> None:
    if us <= 0:
        return
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


async def flood(recorder: Recorder, rate: float, seconds: float, loop_cost_us: float,
                samples: list[tuple[float, int]]) -> int:
    """Submit ``rate`` records a second for ``seconds``, on schedule (catching up after a
    late wake-up); returns how many were submitted."""
    start = time.monotonic()
    sent = 0
    tick = 0.005
    while True:
        elapsed = time.monotonic() - start
        due = min(int(elapsed * rate), int(seconds * rate))
        while sent < due:
            ev = event(sent)
            burn(loop_cost_us)
            recorder.observe(ev)
            sent += 1
        if elapsed >= seconds:
            break
        await asyncio.sleep(tick)
    return sent


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def sample(recorder: Recorder, samples: list[tuple[float, int]], start: float,
                 rss: list[float]) -> None:
    while True:
        samples.append((time.monotonic() - start, recorder.backlog))
        rss.append(rss_mib())
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    url = args.database_url or f"sqlite:///{workdir / 'lai.db'}"
    store = open_store(url)
    await asyncio.to_thread(store.upgrade)
    # As lai.runtime.build_runtime makes it.
    recorder = Recorder(store, spill_path=workdir / "recorder-spill.jsonl", linger=0.2)
    await recorder.start()
    samples: list[tuple[float, int]] = []
    rss: list[float] = []
    rss_start = rss_mib()
    cpu0, loop_cpu0 = time.process_time(), time.thread_time()
    start = time.monotonic()
    sampler = asyncio.create_task(sample(recorder, samples, start, rss))
    try:
        sent = await flood(recorder, args.rate, args.seconds, args.loop_cost_us, samples)
        load_end = time.monotonic()
        backlog_at_end = recorder.backlog
        drained: float | None = None
        while time.monotonic() - load_end < args.drain_limit:
            if not recorder.backlog:
                drained = time.monotonic() - load_end
                break
            await asyncio.sleep(0.01)
        rss_drained = rss_mib()
    finally:
        sampler.cancel()
        await recorder.close()
    # The worker threads' CPU: the process's less the event loop thread's (which made
    # the events and burnt --loop-cost-us).
    worker_cpu = (time.process_time() - cpu0) - (time.thread_time() - loop_cpu0)
    stats = recorder.stats
    store.dispose()
    under_load = [b for t, b in samples if t <= args.seconds]
    # The backlog over the last 10 s of load: a bounded one does not climb.
    tail = [b for t, b in samples if args.seconds - 10 <= t <= args.seconds]
    per_second: dict[int, int] = {}
    for t, b in samples:
        per_second[int(t)] = max(per_second.get(int(t), 0), b)
    return {
        "database": store.dialect,
        "rate": args.rate,
        "seconds": args.seconds,
        "loop_cost_us": args.loop_cost_us,
        "submitted": sent,
        "achieved_rate": round(sent / args.seconds, 1),
        "written": stats.written,
        "messages": stats.messages,
        "batches": stats.batches,
        "mean_batch": round(stats.written / stats.batches, 1) if stats.batches else None,
        "failed_writes": stats.failed_writes,
        "writer_cpu_us_per_record": round(worker_cpu / max(1, stats.written) * 1e6, 1),
        "backlog_peak": max(under_load, default=0),
        "backlog_peak_last_10s": max(tail, default=0),
        "backlog_at_end": backlog_at_end,
        "drained_s": round(drained, 3) if drained is not None else None,
        "backlog_per_second_max": per_second,
        "rss_start_mib": round(rss_start, 1),
        "rss_peak_mib": round(max(rss, default=rss_start), 1),
        "rss_drained_mib": round(rss_drained, 1),
    }


def report(res: dict[str, Any]) -> str:
    drained = (f"{res['drained_s']:.2f} s" if res["drained_s"] is not None
               else "not within the limit")
    return "\n".join([
        f"recorder on {res['database']}: {res['submitted']:,} records in {res['seconds']:g} s "
        f"({res['achieved_rate']:,.0f}/s asked {res['rate']:,.0f}/s), "
        f"loop cost {res['loop_cost_us']:g} us a request",
        f"  written {res['written']:,} requests, {res['messages']:,} messages in "
        f"{res['batches']:,} batches (mean {res['mean_batch']}), "
        f"{res['failed_writes']} failed writes; writer threads' CPU "
        f"{res['writer_cpu_us_per_record']:g} us a record",
        f"  backlog peak {res['backlog_peak']:,} (last 10 s of load: "
        f"{res['backlog_peak_last_10s']:,}); at the end of the load {res['backlog_at_end']:,}",
        f"  empty {drained} after the load ended",
        f"  RSS of this process: {res['rss_start_mib']} MiB before, {res['rss_peak_mib']} "
        f"peak, {res['rss_drained_mib']} once the backlog was written",
        "  peak backlog each second: " + " ".join(
            str(v) for _, v in sorted(res["backlog_per_second_max"].items())),
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=2000.0, help="records a second (2000)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of load (60)")
    p.add_argument("--loop-cost-us", type=float, default=0.0,
                   help="CPU burnt on the event loop per request (0)")
    p.add_argument("--drain-limit", type=float, default=60.0,
                   help="seconds to wait for an empty backlog after the load (60)")
    p.add_argument("--database-url", help="another database (default: a SQLite file)")
    p.add_argument("--smoke", action="store_true", help="2 s at 500/s; figures meaningless")
    p.add_argument("--out", help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        args.rate, args.seconds, args.drain_limit = 500.0, 2.0, 30.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lai-bench-recorder-"))
    uv = uvloop_module()
    runner = asyncio.Runner(loop_factory=uv.new_event_loop) if uv else asyncio.Runner()
    try:
        with runner:
            res = runner.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    lost = res["submitted"] - res["written"]
    if lost:
        print(f"bench: {lost} records not written", file=sys.stderr)
    return 1 if lost or res["drained_s"] is None else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
