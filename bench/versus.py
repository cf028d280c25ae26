"""Two (or more) lai trees side by side: the event loop's CPU per request of each.

Compares code, not machines: every tree serves the same requests against one fast fake
(``bench/fastfake.py``), in one run, the trees taking turns run by run (the order flips
each round), and each figure is the median over the rounds. Two ways:

- proxies (the default): ``lai proxy`` from each tree (``PYTHONPATH`` = the tree),
  configured as ``bench/outside.py`` does (auth on with a key from ``lai keys create``,
  the SQLite recorder, one provider with ``max_concurrent = 1000``), driven by
  ``wrk -t1``; the figure is the CPU time (utime + stime, ``/proc/PID/task/PID/stat``)
  of the proxy's main thread, the one that runs the event loop, over a run divided by
  the requests wrk counted, and the process's as well.
- ``--engine``: no HTTP in front and no store: each tree's ``Engine`` (as
  ``build_runtime`` makes it) serves ``Engine.complete`` / ``Engine.stream`` calls from
  32 tasks in a subprocess; the figure is that thread's CPU time per request. Less noise
  than the proxies, but without what a request costs around the engine.

    python bench/versus.py /work/main .                    # plain requests, 32 then 1 client
    python bench/versus.py /work/main . --stream           # streamed requests
    python bench/versus.py /work/main . --engine --stream  # the engine alone
    python bench/versus.py . . --smoke                     # a few seconds; figures meaningless

The first tree is the base of the ratios. See bench/README.md ("Round three").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from outside import config_text  # noqa: E402
from run import ROOT, spawn  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = {"model": "bench-fast", "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 16}


def thread_cpu(pid: int, tid: int) -> float:
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}


# ------------------------------------------------------------------------ proxies


class Proxy:
    """``lai proxy`` of one tree, with its own config, key and SQLite file."""

    def __init__(self, tree: Path, workdir: Path, upstream: str, stream: bool) -> None:
        self.tree = tree
        workdir.mkdir()
        config = workdir / "config.toml"
        config.write_text(config_text(upstream))
        done = subprocess.run(
            [sys.executable, "-m", "lai.cli", "keys", "create", "bench", "--config",
             str(config)], cwd=tree, env=env_for(tree), capture_output=True, text=True,
            timeout=120)
        key = next((line.strip() for line in done.stdout.splitlines()
                    if re.fullmatch(r"lai_[0-9a-f]{32}", line.strip())), None)
        if key is None:
            raise SystemExit(f"bench: `lai keys create` failed in {tree}:\n{done.stderr}")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0"],
            cwd=tree, env=env_for(tree), stdout=subprocess.PIPE,
            stderr=(workdir / "lai.log").open("wb"))
        assert self.popen.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"listening on" not in seen:
            chunk = os.read(self.popen.stdout.fileno(), 4096)
            if not chunk or time.monotonic() > deadline:
                raise SystemExit(f"bench: lai proxy of {tree} did not start: {seen!r}")
            seen += chunk
        self.url = seen.decode().split("listening on", 1)[1].split()[0]
        body = {**BODY, "stream": True} if stream else BODY
        self.script = workdir / "wrk.lua"
        self.script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n')

    def run(self, clients: int, seconds: int) -> tuple[float, float, float]:
        """One wrk run: (loop thread us a request, process us a request, req/s)."""
        pid = self.popen.pid
        loop0, proc0 = thread_cpu(pid, pid), process_cpu(pid)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", str(self.script),
             self.url + "/v1/chat/completions"],
            capture_output=True, text=True, timeout=seconds + 60).stdout
        loop, proc = thread_cpu(pid, pid) - loop0, process_cpu(pid) - proc0
        found = re.search(r"(\d+) requests in", out)
        requests = int(found.group(1)) if found else 0
        if not requests or "Non-2xx" in out or "Socket errors" in out:
            raise SystemExit(f"bench: wrk against {self.tree} failed:\n{out}")
        return loop * 1e6 / requests, proc * 1e6 / requests, requests / seconds

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def proxies(args: argparse.Namespace, workdir: Path) -> list[str]:
    fake, url = spawn("fastfake", [sys.executable, str(ROOT / "bench" / "fastfake.py"),
                                   "--port", "0"], workdir, "fastfake listening on")
    sides: list[Proxy] = []
    lines = []
    try:
        for i, tree in enumerate(args.trees):
            sides.append(Proxy(tree, workdir / f"tree{i}", url, args.stream))
        time.sleep(1.0)
        for clients in args.clients:
            for side in sides:
                side.run(clients, args.warmup)
            runs: list[list[tuple[float, float, float]]] = [[] for _ in sides]
            for r in range(args.rounds):
                order = range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))
                for i in order:
                    runs[i].append(sides[i].run(clients, args.seconds))
            lines.append(f"{'streamed' if args.stream else 'plain'} requests, "
                         f"{clients} client{'s' if clients > 1 else ''} (wrk -t1), "
                         f"load average {' '.join(_loadavg())}")
            lines += table(args.trees, runs, ("loop us/req", "process us/req", "req/s"))
    finally:
        for side in sides:
            side.stop()
        fake.stop(10)
    return lines


# ------------------------------------------------------------------------ the engine alone


async def _engine_worker(config: Path, requests: int, rounds: int, stream: bool) -> None:
    """Runs in a subprocess with one tree on PYTHONPATH: prints one figure a round."""
    from lai.config.loader import load_settings
    from lai.engine.types import RequestContext, new_request_id
    from lai.runtime import build_runtime

    settings, _ = load_settings(config)
    runtime = build_runtime(settings, store=False)
    engine = runtime.engine
    body = {**BODY, "stream": True} if stream else BODY

    async def one() -> None:
        ctx = RequestContext(request_id=new_request_id(), key_name="bench",
                             conversation_id="conv_" + new_request_id()[4:])
        if stream:
            answer = await engine.stream(dict(body), ctx)
            try:
                async for _ in answer:
                    pass
            finally:
                await answer.aclose()
        else:
            await engine.complete(dict(body), ctx)

    async def batch(n: int) -> None:
        left = iter(range(n))

        async def worker() -> None:
            for _ in left:
                await one()

        await asyncio.gather(*(worker() for _ in range(32)))

    await batch(min(500, requests))  # warm-up: connections, caches
    for _ in range(rounds):
        t0 = time.thread_time()
        await batch(requests)
        print(f"{(time.thread_time() - t0) * 1e6 / requests:.2f}", flush=True)
    await runtime.client.aclose()


def engines(args: argparse.Namespace, workdir: Path) -> list[str]:
    fake, url = spawn("fastfake", [sys.executable, str(ROOT / "bench" / "fastfake.py"),
                                   "--port", "0"], workdir, "fastfake listening on")
    config = workdir / "config.toml"
    config.write_text(config_text(url, workdir / "data"))
    runs: list[list[tuple[float]]] = [[] for _ in args.trees]
    try:
        for r in range(args.rounds):
            order = (range(len(args.trees)) if r % 2 == 0
                     else reversed(range(len(args.trees))))
            for i in order:
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--engine-worker",
                     str(config), str(args.requests), "3", "1" if args.stream else "0"],
                    env=env_for(args.trees[i]), capture_output=True, text=True, timeout=600)
                figures = [float(x) for x in done.stdout.split()]
                if done.returncode or not figures:
                    raise SystemExit(f"bench: the engine of {args.trees[i]} failed:\n"
                                     f"{done.stderr[-3000:]}")
                runs[i].append((statistics.median(figures),))
    finally:
        fake.stop(10)
    return [f"the engine alone, {'streamed' if args.stream else 'plain'} requests, 32 tasks, "
            f"load average {' '.join(_loadavg())}",
            *table(args.trees, runs, ("engine us/req",))]


# ------------------------------------------------------------------------ output


def table(trees: list[Path], runs: list[list[Any]], names: tuple[str, ...]) -> list[str]:
    base = statistics.median(r[0] for r in runs[0])
    lines = ["| tree | " + " | ".join(names) + " | / first tree | runs (first figure) |",
             "| --- |" + " ---: |" * (len(names) + 1) + " --- |"]
    for tree, tree_runs in zip(trees, runs, strict=True):
        medians = [statistics.median(r[k] for r in tree_runs) for k in range(len(names))]
        lines.append(f"| {tree} | " + " | ".join(f"{m:,.1f}" for m in medians)
                     + f" | {medians[0] / base:.3f} | "
                     + ", ".join(f"{r[0]:.0f}" for r in tree_runs) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--engine-worker"]:
        config, requests, rounds, stream = argv[1:5]
        import uvloop

        uvloop.run(_engine_worker(Path(config), int(requests), int(rounds), stream == "1"))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", type=lambda s: Path(s).resolve(),
                   help="lai checkouts (the first is the base)")
    p.add_argument("--stream", action="store_true", help="streamed requests")
    p.add_argument("--engine", action="store_true", help="the engine alone, in-process")
    p.add_argument("--clients", type=int, nargs="+", default=[32, 1])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seconds", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk before the rounds")
    p.add_argument("--requests", type=int, default=4000, help="--engine: requests a round")
    p.add_argument("--smoke", action="store_true", help="a few seconds; figures meaningless")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.clients = 2, 1, 1, [4]
        args.requests = 200
    if not args.engine and shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="lai-versus-"))
    try:
        lines = engines(args, workdir) if args.engine else proxies(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
