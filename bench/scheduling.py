"""Scheduling in a simulated home lab: the same seeded workload through ``lai proxy`` with
``server.scheduling = "fair"`` and with ``"fifo"`` (issue 14, "How it is measured").

The lab (``bench/labfake.py``, all on 127.0.0.1; durations in simulated seconds):

- ``gpu-big``, a 24 GB card behind Ollama: 2 requests at once, 2 of its 3 models fit,
  a swap (load) 6 s, prefill 2500 tokens/s, decode 45 tokens/s;
- ``gpu-small``, a 12 GB card behind Ollama: 1 request at once, 1 of its 2 models fits,
  a swap 4 s, prefill 900 tokens/s, decode 35 tokens/s;
- ``cloud``, an OpenAI-compatible API: 1 s before anything, prefill 8000 tokens/s,
  decode 70 tokens/s, 4 requests at once, $2.50 / $10 per million tokens in / out.

The workload (seeded; every key priority 1, the default, so only the scheduling
differs), each request streamed with usage:

- ``coding-agent``: bursts of 5 requests 0.5 s apart about every 70 s, prompts of 6-14k
  tokens, answers of 200-500 tokens, model ``qwen2.5-coder-14b`` (gpu-big) falling back
  to the cloud;
- ``ana`` and ``ben``, two people chatting with ``auto``: conversations of 3-6 turns
  (short messages, the history growing), 10-40 s between turns, 30-90 s between
  conversations;
- ``nightly-batch``: 24 summaries queued at once at t = 60 s, prompts of 1.5-3k tokens,
  model ``qwen2.5-7b`` (both boxes, no cloud);
- ``private-notes``: a ``--local-only`` key, ``auto``, a request every 45-90 s.

It prints, per class, p50 and p95 time to first token (simulated seconds), the model
swaps the boxes counted, cloud spend (lai's ``/v1/stats`` and the fake's own count), the
longest wait in lai's queue (``X-Queue-Wait-Ms``), and checks: the ``--local-only`` key
never reached the cloud, no box ever held more requests than its ``max_concurrent``,
every request answered, and no request starved (once it had waited 2x the longest
service time, no later arrival of its priority took a slot it could have used before
it).
Exits 1 when a check fails.

    python bench/scheduling.py                  # both modes; about 4 minutes
    python bench/scheduling.py --smoke          # a short workload, a faster clock
    python bench/scheduling.py --mode fair --scale 0.05 --out /tmp/s.json

See bench/README.md ("Scheduling in a home lab").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labfake import Box, BoxSpec  # noqa: E402
from run import Proc, spawn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------- the lab

LAB = (
    BoxSpec("gpu-big", ("llama3.1:8b", "qwen2.5-coder:14b", "qwen2.5:7b"),
            loaded=("llama3.1:8b", "qwen2.5-coder:14b"), fit=2, swap_s=6.0,
            prefill_tps=2500, decode_tps=45, parallel=2),
    BoxSpec("gpu-small", ("llama3.1:8b", "qwen2.5:7b"), loaded=("llama3.1:8b",), fit=1,
            swap_s=4.0, prefill_tps=900, decode_tps=35, parallel=1),
    BoxSpec("cloud", ("gpt-4o",), prefill_tps=8000, decode_tps=70, parallel=4,
            latency_s=1.0, price_in=0.0025, price_out=0.01, cloud=True),
)
"""The boxes; a provider's ``max_concurrent`` is its box's ``parallel``."""

LAI_MODELS = {
    # lai model id: (upstream name, providers)
    "llama3.1-8b": ("llama3.1:8b", ("gpu-big", "gpu-small")),
    "qwen2.5-coder-14b": ("qwen2.5-coder:14b", ("gpu-big",)),
    "qwen2.5-7b": ("qwen2.5:7b", ("gpu-big", "gpu-small")),
    "cloud-4o": ("gpt-4o", ("cloud",)),
}
KEYS = ("coding-agent", "ana", "ben", "nightly-batch", "private-notes")
CLASS = {"coding-agent": "agent", "ana": "people", "ben": "people",
         "nightly-batch": "batch", "private-notes": "private"}
MAY_USE = {  # the providers each class's requests may be served by (for starvation)
    "agent": {"gpu-big", "cloud"},
    "people": {"gpu-big", "gpu-small", "cloud"},
    "batch": {"gpu-big", "gpu-small"},
    "private": {"gpu-big", "gpu-small"},  # --local-only: never the cloud
}


OPERATOR = {
    # lai's own durations, in simulated seconds, as an operator of this lab would set
    # them; lab_config multiplies them by the clock scale (lai does not know the bench
    # scales time, so its durations must be the scaled equivalents).
    "spill_after": 10.0,             # the example
    "prefer_priority_within": 5.0,   # lai's default
    "sticky_within": 3.0,            # lai's default
    "warm_timeout": 300.0,           # lai's default (the server's /api/ps decides here)
    "health_check_interval": 10.0,   # /api/ps is cheap: polled every 10 s
}
"""Simulated seconds; the estimator's built-in guesses (``lai.engine.estimate``) have no
key and are not scaled: they hold until the first requests on a model finished."""


def lab_config(path: Path, urls: dict[str, str], scheduling: str, scale: float = 0.1) -> None:
    op = {k: round(v * scale, 4) for k, v in OPERATOR.items()}
    parts = [textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        database_url = "sqlite:///data/lai.db"
        data_dir = "data"
        auth = true
        scheduling = "{scheduling}"
        queue_timeout = 600
        queue_max_size = 1000
        cloud_fallback = true
        access_log = false
        spill_after = {op["spill_after"]}
        prefer_priority_within = {op["prefer_priority_within"]}
        sticky_within = {op["sticky_within"]}
        warm_timeout = {op["warm_timeout"]}
        """)]
    for spec in LAB:
        kind = "openai" if spec.cloud else "local"
        endpoint = urls[spec.name] + ("/v1" if spec.cloud else "")
        parts.append(textwrap.dedent(f"""
            [[providers]]
            id = "{spec.name}"
            type = "{kind}"
            endpoint = "{endpoint}"
            priority = {2 if spec.cloud else 1}
            max_concurrent = {spec.parallel}
            health_check_interval = {op["health_check_interval"]}
            read_timeout = 600
            """) + ("" if spec.cloud else 'server = "ollama"\n'))
    for mid, (upstream, providers) in LAI_MODELS.items():
        for pid in providers:
            spec = next(s for s in LAB if s.name == pid)
            extra = ""
            if mid == "llama3.1-8b":
                extra += "is_default = true\n"
            if mid == "cloud-4o":
                extra += (f"cost_per_1k_input = {spec.price_in}\n"
                          f"cost_per_1k_output = {spec.price_out}\n")
            else:  # the box's real swap time, as its operator measured it
                extra += f"load_seconds = {round(spec.swap_s * scale, 4)}\n"
            if mid == "qwen2.5-coder-14b":
                extra += 'fallbacks = ["cloud-4o"]\n'
            parts.append(textwrap.dedent(f"""
                [[models]]
                id = "{mid}"
                provider_id = "{pid}"
                upstream_id = "{upstream}"
                context_window = 32768
                """) + extra)
    path.write_text("".join(parts))


def make_key(config: Path, name: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lai.cli", "keys", "create", name, *flags,
         "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in done.stdout.splitlines():
        if re.fullmatch(r"lai_[0-9a-f]{32}", line.strip()):
            return line.strip()
    raise SystemExit(f"bench: lai keys create {name} failed (exit {done.returncode}):\n"
                     f"{done.stderr.strip()[-800:]}")


# ---------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Ask:
    """One request of the workload."""

    at: float
    """Simulated seconds after the start (for a conversation's later turns: the pause
    after the previous answer)."""
    key: str
    model: str
    prompt_tokens: int
    max_tokens: int
    conversation: str | None = None


@dataclass(frozen=True)
class Workload:
    single: tuple[Ask, ...]
    """Requests sent at their time, whatever else happens."""
    people: tuple[tuple[tuple[Ask, ...], ...], ...]
    """Per person, conversations one after another: a conversation's first turn ``at``
    seconds after the previous conversation ended (after the start, for the first), and
    each next turn ``at`` seconds after the previous answer ended."""

    @property
    def count(self) -> int:
        return len(self.single) + sum(len(c) for p in self.people for c in p)


def workload(seed: int, *, horizon: float, batch: int, bursts: int) -> Workload:
    rng = random.Random(seed)
    single: list[Ask] = []
    t = 5.0
    for _ in range(bursts):
        for i in range(5):
            single.append(Ask(t + 0.5 * i, "coding-agent", "qwen2.5-coder-14b",
                              rng.randint(6000, 14000), rng.randint(200, 500)))
        t += rng.uniform(55, 85)
    for _ in range(batch):
        single.append(Ask(60.0, "nightly-batch", "qwen2.5-7b", rng.randint(1500, 3000),
                          rng.randint(200, 400)))
    t = rng.uniform(10, 30)
    while t < horizon:
        single.append(Ask(t, "private-notes", "auto", rng.randint(500, 1500), 150))
        t += rng.uniform(45, 90)
    people = []
    for person in ("ana", "ben"):
        conversations: list[tuple[Ask, ...]] = []
        pause = rng.uniform(0, 20)
        planned = pause
        while planned < horizon:
            n = len(conversations) + 1
            turns = [Ask(pause, person, "auto", rng.randint(20, 120), rng.randint(100, 300),
                         f"{person}-{n}")]
            for _ in range(rng.randint(2, 5)):
                turns.append(Ask(rng.uniform(10, 40), person, "auto", rng.randint(20, 120),
                                 rng.randint(100, 300), f"{person}-{n}"))
            conversations.append(tuple(turns))
            pause = rng.uniform(30, 90)
            # about when the next one starts, answers taking some 10 s each
            planned += sum(a.at for a in turns[1:]) + 10 * len(turns) + pause
        people.append(tuple(conversations))
    return Workload(tuple(single), tuple(people))


def text(tokens: int, cls: str) -> str:
    """About ``tokens`` tokens (four characters each) carrying the class tag the fakes
    count."""
    tag = f"[class={cls}] "
    return tag + "word " * max(0, (tokens * 4 - len(tag)) // 5)


@dataclass
class Result:
    key: str
    cls: str
    arrived: float
    """Real seconds since the run's start."""
    status: int
    ttft: float | None = None
    """Real seconds from sending to the first token."""
    duration: float | None = None
    queue_ms: float = 0.0
    queued: bool = False
    """The answer carried X-Queue-Wait-Ms: it waited in lai's queue."""
    provider: str | None = None
    error: str = ""
    request_id: str | None = None


@dataclass
class Runner:
    http: httpx.AsyncClient
    keys: dict[str, str]
    scale: float
    t0: float = 0.0
    results: list[Result] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def at(self, simulated: float) -> None:
        delay = simulated * self.scale - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(self, ask: Ask, messages: list[dict[str, str]]) -> str:
        """Send one streamed request; returns the answer's text."""
        cls = CLASS[ask.key]
        res = Result(ask.key, cls, self.now(), 0)
        self.results.append(res)
        headers = {"authorization": f"Bearer {self.keys[ask.key]}"}
        if ask.conversation:
            headers["x-conversation-id"] = ask.conversation
        body = {"model": ask.model, "messages": messages, "stream": True,
                "max_tokens": ask.max_tokens, "stream_options": {"include_usage": True}}
        parts: list[str] = []
        start = time.monotonic()
        try:
            async with self.http.stream("POST", "/v1/chat/completions", json=body,
                                        headers=headers) as r:
                res.status = r.status_code
                res.queued = "x-queue-wait-ms" in r.headers
                res.queue_ms = float(r.headers.get("x-queue-wait-ms") or 0)
                res.provider = r.headers.get("x-provider")
                res.request_id = r.headers.get("x-request-id")
                if r.status_code != 200:
                    res.error = (await r.aread()).decode(errors="replace")[:300]
                    return ""
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    doc = orjson.loads(line[6:])
                    if doc.get("error"):
                        res.error = str(doc["error"])[:300]
                    for choice in doc.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if res.ttft is None:
                                res.ttft = time.monotonic() - start
                            parts.append(content)
            res.duration = time.monotonic() - start
        except httpx.HTTPError as exc:
            res.error = f"{type(exc).__name__}: {exc}"
        return "".join(parts)

    async def single(self, ask: Ask) -> None:
        await self.at(ask.at)
        await self.send(ask, [{"role": "user", "content": text(ask.prompt_tokens,
                                                               CLASS[ask.key])}])

    async def person(self, conversations: tuple[tuple[Ask, ...], ...]) -> None:
        for turns in conversations:
            history: list[dict[str, str]] = []
            for ask in turns:
                await asyncio.sleep(ask.at * self.scale)
                history.append({"role": "user", "content": text(ask.prompt_tokens,
                                                                  CLASS[ask.key])})
                answer = await self.send(ask, list(history))
                history.append({"role": "assistant", "content": answer or "(no answer)"})

    async def run(self, work: Workload) -> None:
        self.t0 = time.monotonic()
        await asyncio.gather(*(self.single(a) for a in work.single),
                             *(self.person(p) for p in work.people))


# ---------------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def starved(results: list[Result], scale: float) -> list[dict[str, Any]]:
    """Requests that, once they had waited 2x the longest service time, still saw a later
    arrival (all keys here are priority 1) take a slot on a provider they could have
    used before them. A batch of 24 on three slots waits longer than that by itself;
    being passed after that point is what starving is. "Later" is a simulated second or
    more: requests sent together (the batch's 24) reach lai in no fixed order."""
    done = [r for r in results if r.duration is not None and r.provider]
    if not done:
        return []
    start = {id(r): r.arrived + r.queue_ms / 1000 for r in done}
    longest = max(r.duration - r.queue_ms / 1000 for r in done)  # type: ignore[operator]
    out = []
    for r in done:
        if r.queue_ms / 1000 <= 2 * longest:
            continue
        patience = r.arrived + 2 * longest
        passed = [o for o in done if o.arrived >= r.arrived + scale
                  and patience < start[id(o)] < start[id(r)] and o.provider in MAY_USE[r.cls]]
        if passed:
            out.append({"key": r.key, "waited_s": round(r.queue_ms / 1000 / scale, 1),
                        "overtaken_by": len(passed)})
    return out


def rows(db: Path) -> dict[str, dict[str, Any]]:
    """The stored ``requests`` rows by request id: what lai chose and why."""
    import sqlite3
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in con.execute(
            "SELECT request_id, provider_id, model_id, queue_ms, ttft_ms, estimate_ms, "
            "route_reason FROM requests")}
    finally:
        con.close()


def summarize(mode: str, runner: Runner, boxes: dict[str, Box], cloud_cost_lai: float | None,
              stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    scale = runner.scale
    results = runner.results
    per_class: dict[str, Any] = {}
    for cls in ("people", "agent", "batch", "private"):
        mine = [r for r in results if r.cls == cls]
        ttfts = [r.ttft / scale for r in mine if r.ttft is not None]
        p50, p95 = percentile(ttfts, 50), percentile(ttfts, 95)
        per_class[cls] = {
            "requests": len(mine), "queued": sum(r.queued for r in mine),
            "ttft_p50_s": None if p50 is None else round(p50, 2),
            "ttft_p95_s": None if p95 is None else round(p95, 2),
            "longest_queue_wait_s": round(max((r.queue_ms for r in mine), default=0)
                                          / 1000 / scale, 1),
            "served_by": {p: sum(1 for r in mine if r.provider == p)
                          for p in sorted({r.provider or "-" for r in mine})},
        }
    over = {name: (b.stats.max_active, b.spec.parallel) for name, b in boxes.items()
            if b.stats.max_active > b.spec.parallel}
    failed = [r for r in results if r.status != 200 or r.error or r.ttft is None]
    private_in_cloud = boxes["cloud"].stats.classes.get("private", 0)
    starving = starved(results, scale)
    checks = {
        "every_request_answered": not failed,
        "max_concurrent_held": not over,
        "no_starvation": not starving,
        "local_only_stayed_home": private_in_cloud == 0,
    }
    return {
        "mode": mode,
        "classes": per_class,
        "swaps": {n: b.stats.swaps for n, b in boxes.items() if not b.spec.cloud},
        "boxes": {n: b.stats.to_dict() for n, b in boxes.items()},
        "cloud_spend_usd": {"lai": cloud_cost_lai,
                            "fake": round(boxes["cloud"].stats.spend_usd, 6)},
        "longest_queue_wait_s": round(max((r.queue_ms for r in results), default=0)
                                      / 1000 / scale, 1),
        "private_requests_in_cloud": private_in_cloud,
        "over_capacity": over,
        "starved": starving,
        "failed": [{"key": r.key, "status": r.status, "error": r.error} for r in failed][:20],
        "longest_service_s": round(max((r.duration - r.queue_ms / 1000 for r in results
                                        if r.duration is not None), default=0) / scale, 1),
        "requests": [trace(r, stored.get(r.request_id or ""), scale) for r in results],
        "wall_s": round(runner.now(), 1),
        "checks": checks,
    }


def trace(r: Result, row: dict[str, Any] | None, scale: float) -> dict[str, Any]:
    """One request as the bench saw it and as lai recorded it (simulated seconds)."""
    row = row or {}
    est = row.get("estimate_ms")
    return {"key": r.key, "at": round(r.arrived / scale, 2),
            "queue_s": round(r.queue_ms / 1000 / scale, 2),
            "ttft_s": None if r.ttft is None else round(r.ttft / scale, 2),
            "provider": r.provider, "model": row.get("model_id"),
            "estimate_s": None if est is None else round(est / 1000 / scale, 2),
            "route_reason": row.get("route_reason")}


def print_trace(run: dict[str, Any], classes: set[str]) -> None:
    print(f"--- {run['mode']}: requests of {', '.join(sorted(classes))} "
          "(simulated s: arrival, queue wait, ttft, estimate)")
    for t in sorted(run["requests"], key=lambda t: t["at"]):
        if CLASS[t["key"]] not in classes:
            continue
        print(f"{t['at']:7.1f} {t['key']:14} q {t['queue_s']:6.2f} ttft {fmt(t['ttft_s']):>6} "
              f"est {fmt(t['estimate_s']):>6} {t['provider'] or '-':9} {t['model'] or '-':18} "
              f"{t['route_reason'] or ''}")


async def cloud_cost(http: httpx.AsyncClient, key: str, requests: int) -> float | None:
    """lai's recorded cost on the cloud provider, once every request is in the store."""
    headers = {"authorization": f"Bearer {key}"}
    for _ in range(50):
        r = await http.get("/v1/stats", params={"by": "provider", "days": 1}, headers=headers)
        if r.status_code == 200:
            doc = r.json()
            if doc["total"]["requests"] >= requests:
                return round(sum(g["cost_usd"] for g in doc["groups"]
                                 if g["group"] == "cloud"), 6)
        await asyncio.sleep(0.2)
    return None


# ---------------------------------------------------------------------- one run


async def wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await http.get("/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("bench: lai proxy did not answer /health")


async def make_keys(workdir: Path) -> dict[str, str]:
    """The workload's keys, made once with ``lai keys create`` in ``workdir/keys/data``
    (each run starts from a copy of that store)."""
    here = workdir / "keys"
    here.mkdir()
    config = here / "config.toml"
    lab_config(config, {s.name: "http://127.0.0.1:9" for s in LAB}, "fair")
    keys = {}
    for name in KEYS:
        flags = ("--local-only",) if name == "private-notes" else ()
        keys[name] = await asyncio.to_thread(make_key, config, name, *flags)
    return keys


async def run_mode(mode: str, work: Workload, scale: float, workdir: Path,
                   keys: dict[str, str]) -> dict[str, Any]:
    here = workdir / mode
    shutil.copytree(workdir / "keys" / "data", here / "data")
    boxes = {s.name: await Box(s, scale).start() for s in LAB}
    config = here / "config.toml"
    lab_config(config, {n: b.url for n, b in boxes.items()}, mode, scale)
    proc: Proc | None = None
    try:
        proc, url = await asyncio.to_thread(
            spawn, f"lai-{mode}", [sys.executable, "-m", "lai.cli", "proxy", "--config",
                                   str(config), "--port", "0"],
            here, "lai proxy listening on")
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900, connect=10),
                                     limits=limits, trust_env=False) as http:
            await wait_ready(http)
            runner = Runner(http, keys, scale)
            for b in boxes.values():
                b.start_clock()
            await runner.run(work)
            cost = await cloud_cost(http, keys["ana"], work.count)
        res = summarize(mode, runner, boxes, cost, rows(here / "data" / "lai.db"))
        code = proc.stop()
        if code not in (0, None):
            res["checks"]["proxy_exited_cleanly"] = False
        return res
    finally:
        if proc is not None:
            proc.stop(5)
        for b in boxes.values():
            await b.stop()


# ---------------------------------------------------------------------- report


def fmt(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def report(runs: list[dict[str, Any]], scale: float, notes: list[str]) -> str:
    lines = [f"scheduling bench: simulated seconds; clock scale {scale:g} "
             f"(1 simulated s = {scale:g} real s)"]
    lines += [f"note: {n}" for n in notes]
    head = f"{'':22}" + "".join(f"{r['mode']:>14}" for r in runs)
    lines.append(head)

    def row(label: str, get: Any) -> None:
        lines.append(f"{label:22}" + "".join(f"{fmt(get(r)):>14}" for r in runs))

    for cls in ("people", "agent", "batch", "private"):
        row(f"{cls} requests/queued", lambda r, c=cls: "{requests}/{queued}".format(
            **r["classes"][c]))
        row(f"{cls} ttft p50 s", lambda r, c=cls: r["classes"][c]["ttft_p50_s"])
        row(f"{cls} ttft p95 s", lambda r, c=cls: r["classes"][c]["ttft_p95_s"])
    row("model swaps", lambda r: sum(r["swaps"].values()))
    for name in ("gpu-big", "gpu-small"):
        row(f"  swaps {name}", lambda r, n=name: r["swaps"][n])
    row("cloud spend $ (lai)", lambda r: r["cloud_spend_usd"]["lai"])
    row("cloud spend $ (fake)", lambda r: r["cloud_spend_usd"]["fake"])
    row("longest queue wait s", lambda r: r["longest_queue_wait_s"])
    row("longest service s", lambda r: r["longest_service_s"])
    for name in ("gpu-big", "gpu-small", "cloud"):
        row(f"max at once {name}", lambda r, n=name: r["boxes"][n]["max_active"])
    row("wall s", lambda r: r["wall_s"])
    for check in runs[0]["checks"]:
        row(f"check {check}", lambda r, c=check: r["checks"].get(c))
    if len(runs) == 2:
        fair, fifo = runs
        a, b = fair["classes"]["people"]["ttft_p95_s"], fifo["classes"]["people"]["ttft_p95_s"]
        if a and b:
            lines.append(f"people p95 ttft fifo/fair: {b / a:.2f}x (goal >= 3x)")
        sa, sb = sum(fair["swaps"].values()), sum(fifo["swaps"].values())
        lines.append(f"swaps fair/fifo: {sa}/{sb} (goal fewer than half)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="a short workload on a fast clock (seconds); for the test")
    p.add_argument("--mode", choices=("both", "fair", "fifo"), default="both")
    p.add_argument("--scale", type=float, help="real seconds per simulated second "
                   "(default 0.1, smoke 0.02)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--out", default="bench/results/scheduling.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--trace", default="", help="print each request of these classes "
                   "(comma-separated: people,agent,batch,private, or all) with lai's "
                   "choice and reason from the store")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    if args.smoke:
        work = workload(args.seed, horizon=40, batch=6, bursts=1)
        scale = args.scale or 0.02
    else:
        work = workload(args.seed, horizon=420, batch=24, bursts=6)
        scale = args.scale or 0.1
    notes: list[str] = []
    modes = ["fair", "fifo"] if args.mode == "both" else [args.mode]
    keys = await make_keys(workdir)
    runs = [await run_mode(m, work, scale, workdir, keys) for m in modes]
    return {"scale": scale, "seed": args.seed, "smoke": bool(args.smoke),
            "requests": work.count, "notes": notes, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lai-sched-"))
    try:
        res = asyncio.run(main_async(args, workdir))
    finally:
        if args.keep:
            print(f"bench: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.trace:
        classes = set(CLASS.values()) if args.trace == "all" else set(args.trace.split(","))
        for run in res["runs"]:
            print_trace(run, classes)
    print(report(res["runs"], res["scale"], res["notes"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwritten to {out}")
    failed = [(r["mode"], c) for r in res["runs"] for c, ok in r["checks"].items()
              if ok is False]
    if failed:
        print("checks failed: " + ", ".join(f"{m}: {c}" for m, c in failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
