"""The board's rows as cells: providers, requests in flight and waiting, failures; the
providers' sort orders and the filter's matching. Pure functions of the engine's
dataclasses, so the board screen only decides when to draw."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from lai.engine.types import Failure, ProviderSnapshot, Queued, ServerLoad
from lai.tui.board_state import FlightRow

STATUS_STYLE = {
    "healthy": "bold green",
    "degraded": "bold yellow",
    "unhealthy": "bold red",
    "disabled": "dim",
    "unknown": "dim italic",
}
PROVIDER_COLUMNS = (("status", "Status"), ("name", "Provider"), ("type", "Type"),
                    ("slots", "In flight"), ("queue", "Queue"), ("latency", "Latency"),
                    ("checked", "Last check"), ("fails", "Fails"), ("models", "Models"))
FLIGHT_COLUMNS = (("key", "Key"), ("model", "Model"), ("provider", "Provider"),
                  ("elapsed", "Elapsed"), ("tokens", "Tokens"))
QUEUE_COLUMNS = (("position", "#"), ("key", "Key"), ("model", "Model"),
                 ("priority", "Priority"), ("waited", "Waited"), ("starts", "Starts in"))
FAILURE_COLUMNS = (("at", "Time"), ("provider", "Provider"), ("status", "Status"),
                   ("reason", "Reason"), ("key", "Key"))
SORTS = ("priority", "name", "status", "in flight", "latency")
STATUS_ORDER = {"unhealthy": 0, "degraded": 1, "unknown": 2, "healthy": 3, "disabled": 4}


def sort_providers(providers: list[ProviderSnapshot], by: str) -> list[ProviderSnapshot]:
    """Providers in the board's order: ``priority`` (the router's), ``name``, ``status``
    (worst first), ``in flight`` (busiest first) or ``latency`` (slowest first)."""
    keys = {
        "priority": lambda p: (p.priority, p.id),
        "name": lambda p: (p.name.lower(), p.id),
        "status": lambda p: (STATUS_ORDER.get(p.status, 5), p.priority, p.id),
        "in flight": lambda p: (-p.active_requests, -p.queue_depth, p.priority, p.id),
        "latency": lambda p: (-(p.latency_ms or 0.0), p.priority, p.id),
    }
    return sorted(providers, key=keys[by])


def provider_matches(p: ProviderSnapshot, needle: str) -> bool:
    hay = " ".join([p.id, p.name, p.type, p.status, *p.models]).lower()
    return needle.lower() in hay


def duration(ms: float) -> str:
    """``850 ms``, ``18.1 s``: latencies as people read them."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def ago(then: float | None, now: float) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``; ``never`` before the first check."""
    if then is None:
        return "never"
    seconds = max(0, int(now - then))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def provider_cells(p: ProviderSnapshot, now: float, *, stale: bool = False) -> tuple[Any, ...]:
    """One board row. Warm models carry a filled dot, cold ones a hollow one. A stale
    board shows when the last check was, not how long ago (it cannot know now)."""
    models = Text()
    for i, model in enumerate(p.models):
        if i:
            models.append("  ")
        warm = model in p.warm_models
        models.append("● " if warm else "○ ", style="green" if warm else "dim")
        models.append(model)
    latency = "–" if p.latency_ms is None else duration(p.latency_ms)
    fails = Text(str(p.consecutive_failures),
                 style="bold red" if p.consecutive_failures else "")
    if stale:
        checked = "never" if p.last_check is None else f"at {clock(p.last_check)}"
    else:
        checked = ago(p.last_check, now)
    return (Text(f"● {p.status}", style=STATUS_STYLE.get(p.status, "")), p.name, p.type,
            f"{p.active_requests}/{p.max_concurrent}", str(p.queue_depth), latency,
            checked, fails, models)


def load_summary(load: ServerLoad) -> str:
    """``2 running · 1 waiting · KV 37%``, ``slots 3/4 idle``: what the server reports."""
    parts = []
    if load.running is not None and load.slots_total is None:
        parts.append(f"{load.running} running")
    if load.waiting is not None:
        parts.append(f"{load.waiting} waiting")
    if load.kv_cache_usage is not None:
        parts.append(f"KV {load.kv_cache_usage:.0%}")
    if load.slots_total is not None:
        idle = "?" if load.slots_idle is None else str(load.slots_idle)
        parts.append(f"slots {idle}/{load.slots_total} idle")
    return " · ".join(parts)


def server_summary(p: ProviderSnapshot) -> str:
    """``ollama: 2 loaded · 1 running``; empty without a ``server`` hint."""
    if not p.server:
        return ""
    known = "loaded unknown" if p.loaded_models is None else f"{len(p.loaded_models)} loaded"
    load = load_summary(p.load) if p.load is not None else ""
    return f"{p.server}: {known}" + (f" · {load}" if load else "")


def flight_cells(f: FlightRow, now: float, *, stale: bool = False) -> tuple[Any, ...]:
    tokens = "–" if f.tokens is None else str(f.tokens)
    elapsed = f"since {clock(f.started_at)}" if stale else f"{max(0.0, now - f.started_at):.1f}s"
    return (f.key_name or "(none)", f.model, f.provider, elapsed, tokens)


def queue_cells(q: Queued, *, stale: bool = False) -> tuple[Any, ...]:
    waited = f"since {clock(q.since)}" if stale else f"{q.waited_ms / 1000:.1f}s"
    return (str(q.position), q.key_name or "(none)", q.model, str(q.priority), waited,
            starts_in(q, stale=stale))


def starts_in(q: Queued, *, stale: bool = False) -> Text:
    """``~3.2 s``: the engine's estimate, at the last poll, of the time until the request
    gets a slot; "–" when there is none or the board is stale (the proxy may have moved
    on)."""
    if stale or q.estimated_start_ms is None:
        return Text("–", style="dim")
    return Text(f"~{q.estimated_start_ms / 1000:.1f} s")


def failure_cells(f: Failure) -> tuple[Any, ...]:
    status = Text(str(f.status), style="yellow" if f.status == "failover" else "bold red")
    return (clock(f.at), f.provider_id or "–", status,
            Text(f.reason[:60] + ("…" if len(f.reason) > 60 else "")), f.key_name or "(none)")


def flight_matches(f: FlightRow, needle: str) -> bool:
    return needle.lower() in " ".join([f.key_name or "", f.model, f.provider]).lower()
