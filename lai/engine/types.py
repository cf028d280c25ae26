"""Values the engine takes and gives: frozen dataclasses, no framework types."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from lai.engine.quota import KeyQuota

ProviderStatus = Literal["unknown", "healthy", "degraded", "unhealthy", "disabled"]


_RANDOM = random.Random()
"""The random half of ids: its own generator, seeded from ``os.urandom`` and again in
every forked child (a child must not repeat its parent's ids), and untouched by
``random.seed`` (which a test library may call before each example)."""
os.register_at_fork(after_in_child=_RANDOM.seed)
_bits = _RANDOM.getrandbits


def time_ordered_hex() -> str:
    """24 hex digits: the wall-clock time in milliseconds (12), then 48 random bits (12).

    Ids made one after another sort in that order, so the store appends them at the end
    of its indexes: random ids put each insert on a different index page, and once the
    indexes outgrew SQLite's page cache every request cost the recorder ~3x as much at
    100,000 rows and more as the database grew (bench/README.md, "The recorder under a
    flood"). Not a secret and not a clock: only unique and roughly ordered. So the bits
    come from a seeded generator, not from ``secrets`` (a system call for each id).
    """
    return f"{time.time_ns() // 1_000_000:012x}{_bits(48):012x}"


def new_request_id() -> str:
    return "req_" + time_ordered_hex()


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asks and how urgently. Built by the proxy (or the TUI) for each request."""

    request_id: str = field(default_factory=new_request_id)
    priority: int = 1
    """0 jumps the queue (agent keys), 1 otherwise."""
    key_name: str | None = None
    key_prefix: str | None = None
    allowed_models: frozenset[str] | None = None
    """When set, only these model ids (or provider/model) may serve the request."""
    conversation_id: str | None = None
    username: str | None = None
    source: str | None = None
    display_name: str | None = None
    endpoint: str = "chat.completions"
    quota: KeyQuota = KeyQuota()
    """The key's own limits: in flight and queued (the slots), rpm, tpm and budgets
    (checked by ``Engine.admit`` before queueing)."""
    local_only: bool = False
    """The key has scope ``local-only``: no cloud provider ever serves it."""
    spill_after: float | None = None
    """The key's own ``--spill-after`` (seconds), instead of ``server.spill_after``."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    """True when the upstream sent no usage and the numbers were counted by lai."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished non-streamed answer: the upstream JSON with ``"provider"`` added."""

    body: bytes
    provider_id: str
    model_id: str
    usage: Usage
    cost_usd: float
    queue_wait_ms: float | None = None
    """How long it waited in the queue for a slot; None when it found one at once."""


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """How busy a model server says it is (``lai.engine.discovery``); each figure is
    None when that kind of server does not report it."""

    running: int | None = None
    """Requests the server is working on now (all clients, not only lai's)."""
    waiting: int | None = None
    """Requests queued inside the server."""
    kv_cache_usage: float | None = None
    """Fraction of the KV cache in use, 0.0 to 1.0."""
    slots_total: int | None = None
    """Parallel slots (llama.cpp's ``--parallel``)."""
    slots_idle: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, "waiting": self.waiting,
                "kv_cache_usage": self.kv_cache_usage, "slots_total": self.slots_total,
                "slots_idle": self.slots_idle}

    @classmethod
    def from_dict(cls, data: Any) -> ServerLoad | None:
        """The inverse of ``to_dict`` (for clients of the API); None for anything else.
        A member of the wrong type becomes None."""
        if not isinstance(data, dict):
            return None

        def count(name: str) -> int | None:
            v = data.get(name)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        kv = data.get("kv_cache_usage")
        return cls(count("running"), count("waiting"),
                   float(kv) if isinstance(kv, (int, float)) and not isinstance(kv, bool)
                   else None, count("slots_total"), count("slots_idle"))


@dataclass(frozen=True, slots=True)
class ProviderSnapshot:
    """A provider's live state, as /v1/providers and the TUI board show it."""

    id: str
    name: str
    type: str
    status: ProviderStatus
    enabled: bool
    priority: int
    active_requests: int
    max_concurrent: int
    queue_depth: int
    latency_ms: float | None
    last_check: float | None
    """Wall-clock epoch seconds of the last probe, None before the first."""
    consecutive_failures: int
    last_error: str | None
    models: tuple[str, ...]
    warm_models: tuple[str, ...]
    server: str | None = None
    """The provider's ``server`` hint: which kind of server lai asks what is loaded."""
    loaded_models: tuple[str, ...] | None = None
    """The names the server reports loaded (its own names, sorted); None: not known."""
    load: ServerLoad | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "enabled": self.enabled,
            "priority": self.priority,
            "active_requests": self.active_requests,
            "max_concurrent": self.max_concurrent,
            "queue_depth": self.queue_depth,
            "latency_ms": self.latency_ms,
            "last_check": self.last_check,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "models": list(self.models),
            "warm_models": list(self.warm_models),
            "server": self.server,
            "loaded_models": None if self.loaded_models is None else list(self.loaded_models),
            "load": None if self.load is None else self.load.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class InFlight:
    """A request being served right now (the TUI board's lower table)."""

    request_id: str
    key_name: str | None
    model_id: str
    provider_id: str
    started_at: float
    """Wall-clock epoch seconds."""
    streaming: bool
    completion_tokens: int
    """Content chunks streamed so far (0 for a non-streamed request until it is done)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "key_name": self.key_name,
            "model_id": self.model_id, "provider_id": self.provider_id,
            "started_at": self.started_at, "streaming": self.streaming,
            "completion_tokens": self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class Queued:
    """A request waiting for a slot (the TUI board's queue table, ``GET /admin/queue``)."""

    request_id: str
    key_name: str | None
    model: str
    """The model the client asked for (``auto``, an id, a provider id)."""
    priority: int
    position: int
    """1 for the request served next."""
    since: float
    """Wall-clock epoch seconds when it began to wait."""
    waited_ms: float
    conversation_id: str | None = None
    estimated_start_ms: float | None = None
    """Expected milliseconds from now until it gets a slot (``lai.engine.estimate``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "key_name": self.key_name, "model": self.model,
            "priority": self.priority, "position": self.position, "since": self.since,
            "waited_ms": round(self.waited_ms, 1), "conversation_id": self.conversation_id,
            "estimated_start_ms": (None if self.estimated_start_ms is None
                                   else round(self.estimated_start_ms)),
        }


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that failed, or an attempt that failed over (the board's failure list,
    ``GET /admin/failures``)."""

    at: float
    """Wall-clock epoch seconds."""
    request_id: str
    provider_id: str | None
    key_name: str | None
    model: str
    status: int | str
    """The HTTP status the client got, or ``"failover"`` for an attempt given up on."""
    code: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "request_id": self.request_id, "provider_id": self.provider_id,
            "key_name": self.key_name, "model": self.model, "status": self.status,
            "code": self.code, "reason": self.reason,
        }
