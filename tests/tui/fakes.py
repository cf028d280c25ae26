"""A pure-Python LaiClient with fixed data, for snapshot tests only.

Behaviour tests use the real clients (embedded runtime, or a proxy subprocess); this one
exists so that pictures do not depend on timing: every time it reports is relative to
``NOW``, which is also the app's clock in the snapshot tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lai.engine.quota import KeyQuota
from lai.engine.types import Failure, InFlight, ProviderSnapshot, Queued
from lai.store.keyusage import KeyLimits, LimitUse
from lai.store.stats import Row, UsageReport, compute, window
from lai.tui.client import (
    Attachment,
    ChatDelta,
    ChatEvent,
    ChatFinished,
    ChatStarted,
    ClientError,
    ConversationList,
    LimitsEdit,
    Mode,
    NewKey,
)

NOW = 1_767_225_600.0
"""2026-01-01 00:00:00 UTC."""


def provider(pid: str, name: str, status: str = "healthy", **kw: Any) -> ProviderSnapshot:
    base: dict[str, Any] = dict(
        id=pid, name=name, type="local", status=status, enabled=status != "disabled",
        priority=1, active_requests=0, max_concurrent=2, queue_depth=0, latency_ms=42.0,
        last_check=NOW - 12, consecutive_failures=0, last_error=None,
        models=("qwen2.5-14b",), warm_models=(),
    )
    base.update(kw)
    return ProviderSnapshot(**base)


def ordinary_providers() -> list[ProviderSnapshot]:
    return [
        provider("gaming-pc", "Gaming PC (RTX 3090)", active_requests=1, max_concurrent=1,
                 queue_depth=2, latency_ms=38.0, models=("qwen2.5-14b", "llava-13b"),
                 warm_models=("qwen2.5-14b",)),
        provider("nuc", "NUC (llama.cpp)", "degraded", priority=2, max_concurrent=2,
                 latency_ms=5400.0, last_check=NOW - 95, models=("phi-3-mini",)),
        provider("zai", "Z.ai GLM", type="openai", priority=10, max_concurrent=8,
                 active_requests=1, latency_ms=310.0, last_check=NOW - 4000,
                 models=("glm-4.6",), warm_models=("glm-4.6",)),
    ]


def history_events() -> list[dict[str, Any]]:
    """Five minutes of finished requests with a rising rate and a latency bump."""
    events: list[dict[str, Any]] = []
    for i in range(60):
        for j in range(i % 7 + (i // 10)):
            events.append({"kind": "request_finished", "request_id": f"old{i}-{j}",
                           "provider_id": "gaming-pc", "status": "success",
                           "started_at": NOW - 300 + i * 5, "duration_ms": 400.0 + 40 * (i % 13)})
    return events


def conversation(i: int, **kw: Any) -> dict[str, Any]:
    base = {"id": f"conv_{i:04d}", "object": "conversation",
            "created_at": int(NOW) - 3600 * i - 600, "updated_at": int(NOW) - 3600 * i,
            "username": "ana" if i % 3 else None, "source": ("tui", "opencode", "aider")[i % 3],
            "display_name": f"Question number {i}" if i % 4 else None,
            "message_count": 2 + i % 5, "total_tokens": 120 * (i + 1),
            "title": f"How do I fix error {i} in the build?",
            "key_name": ("ana-laptop", "agent-ci", "nightly-batch")[i % 3],
            "model": ("qwen2.5-14b", "glm-4.6")[i % 2]}
    base.update(kw)
    return base


def key(i: int, name: str, status: str = "active", **kw: Any) -> dict[str, Any]:
    base = {"id": i, "name": name, "prefix": f"lai_{i:04x}", "scopes": [], "priority": 1,
            "models": None, "created_at": "2025-12-01T10:00:00+00:00", "last_used_at": None,
            "expires_at": None, "grace_until": None, "revoked_at": None,
            "enabled": status != "revoked", "status": status, "status_text": status,
            "rotated_from": None, "replaced_by": None}
    base.update(kw)
    return base


def usage_rows() -> list[Row]:
    """A week of traffic: mostly the local box, some cloud spill, a few errors."""
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=6, hours=-1)
    rows: list[Row] = []
    for i in range(240):
        day = i % 7
        local = i % 5 != 0
        failed = i % 23 == 0
        rows.append(Row(
            started_at=start + timedelta(days=day, minutes=i),
            model_id="qwen2.5-14b" if local else "glm-4.6",
            provider_id="gaming-pc" if local else "zai",
            key_name=("agent-ci", "ana-laptop", "nightly-batch")[i % 3],
            status="error" if failed else "success",
            prompt_tokens=300 + 17 * (i % 11), completion_tokens=80 + 13 * (i % 7),
            cost_usd=0.00004 if local else 0.0012 + 0.0001 * (i % 4),
            duration_ms=700.0 + 90 * (i % 13), failover_from=["nuc"] if i % 31 == 0 else None,
        ))
    return rows


def key_limit_rows() -> list[KeyLimits]:
    """Three keys with limits: one comfortable, one near its tpm, one over its budget."""
    now = datetime.fromtimestamp(NOW, UTC)
    day, month = now + timedelta(days=1), now + timedelta(days=31)
    return [
        KeyLimits("agent-ci", "lai_0001",
                  KeyQuota(max_concurrent=2, max_queued=5, rpm=60, budgets=(("day", 5.0),)),
                  (LimitUse("rpm", 60, 12, None), LimitUse("day", 5.0, 1.2, day))),
        KeyLimits("ana-laptop", "lai_0002", KeyQuota(max_concurrent=1), ()),
        KeyLimits("nightly-batch", "lai_0003",
                  KeyQuota(tpm=100_000, budgets=(("week", 20.0), ("month", 50.0))),
                  (LimitUse("tpm", 100_000, 91_234, None), LimitUse("week", 20.0, 9.5, day),
                   LimitUse("month", 50.0, 50.4, month))),
    ]


@dataclass
class FakeClient:
    """Fixed providers, conversations and keys; a scripted chat."""

    mode: Mode = "embedded"
    location: str = "/srv/lai/config.toml"
    provider_list: list[ProviderSnapshot] = field(default_factory=ordinary_providers)
    flights: list[InFlight] = field(default_factory=list)
    past: list[dict[str, Any]] = field(default_factory=list)
    events_error: str | None = None
    convs: list[dict[str, Any]] = field(default_factory=list)
    key_list: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)
    """Method name -> the ClientError message it raises."""
    answer: list[str] = field(default_factory=lambda: ["Hello", "! How", " can I", " help?"])
    hold_after: int | None = None
    """Stop streaming after this many deltas and wait (a stream in progress)."""
    model_list: list[dict[str, Any]] = field(default_factory=list)
    usage_data: list[Row] = field(default_factory=list)
    queue: list[Queued] = field(default_factory=list)
    unreachable_after: int | None = None
    """Answer this many provider polls, then fail every one (the proxy went away)."""
    polls: int = 0
    failure_list: list[Failure] = field(default_factory=list)
    limit_list: list[KeyLimits] = field(default_factory=list)
    handover_pid: int | None = None
    """A proxy asking this (embedded) fake to hand over."""

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise ClientError(self.fail[name], code="fake")

    async def start(self) -> None:
        self._maybe_fail("start")

    async def close(self) -> None:
        pass

    async def handover_request(self) -> int | None:
        return self.handover_pid

    async def decline_handover(self) -> None:
        self.handover_pid = None

    async def hand_over(self) -> Any:
        raise ClientError("not in the fake")

    async def providers(self) -> list[ProviderSnapshot]:
        self._maybe_fail("providers")
        self.polls += 1
        if self.unreachable_after is not None and self.polls > self.unreachable_after:
            raise ClientError("The lai proxy at /srv/lai/data/lai.sock is not reachable "
                              "(ConnectError: connection refused).")
        return list(self.provider_list)

    async def in_flight(self) -> list[InFlight] | None:
        return list(self.flights)

    async def queued(self) -> list[Queued]:
        return list(self.queue)

    async def failures(self) -> list[Failure]:
        return list(self.failure_list)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self.events_error:
            raise ClientError(self.events_error)
        yield {"kind": "snapshot", "providers": [p.to_dict() for p in self.provider_list]}
        for event in self.past:
            yield event
        await asyncio.Event().wait()

    async def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        raise ClientError("not in the fake")

    async def check(self, provider_id: str) -> ProviderSnapshot:
        raise ClientError("not in the fake")

    async def models(self) -> list[dict[str, Any]]:
        if self.model_list:
            return list(self.model_list)
        out: list[dict[str, Any]] = []
        for p in self.provider_list:
            for m in p.models:
                out.append({"id": m, "provider": p.id, "warm": m in p.warm_models,
                            "capabilities": {"vision": m.startswith("llava"),
                                             "function_calling": m.startswith("qwen")}})
        return out

    async def chat(
        self, body: dict[str, Any], *, conversation_id: str, display_name: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        self._maybe_fail("chat")
        yield ChatStarted("gaming-pc", "qwen2.5-14b")
        for i, piece in enumerate(self.answer):
            if self.hold_after is not None and i >= self.hold_after:
                await asyncio.Event().wait()
            yield ChatDelta(piece)
        yield ChatFinished("gaming-pc", "qwen2.5-14b", 12, len(self.answer), "stop")

    async def load_attachment(self, path: str) -> Attachment:
        self._maybe_fail("load_attachment")
        return Attachment(path, path.rsplit("/", 1)[-1], "image/png", 20480, 64, 48, b"")

    async def save_attachments(self, conversation_id: str, message_id: str,
                               attachments: list[Attachment]) -> list[dict[str, Any]]:
        return [{"path": f"{conversation_id}/{message_id}/001_{a.filename}"}
                for a in attachments]

    async def discard_attachments(self, conversation_id: str, message_id: str) -> None:
        pass

    def image_path(self, ref: Any) -> str:
        return f"/srv/lai/data/images/{ref['path']}"

    async def conversations(self, *, q: str | None, limit: int, offset: int,
                            filters: dict[str, str] | None = None) -> ConversationList:
        self._maybe_fail("conversations")
        rows = [c for c in self.convs if not q or q.lower() in str(c.get("display_name")).lower()]
        rows = [c for c in rows if all(c.get(k) == v for k, v in (filters or {}).items())]
        return ConversationList(rows[offset:offset + limit], len(rows) > offset + limit, len(rows))

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        conv = next(c for c in self.convs if c["id"] == conversation_id)
        return {**conv, "messages": conv.get("messages", [])}

    async def rename_conversation(self, conversation_id: str, name: str | None) -> None:
        raise ClientError("not in the fake")

    async def delete_conversation(self, conversation_id: str) -> None:
        raise ClientError("not in the fake")

    async def save_provider(self, provider_id: str, values: dict[str, Any]) -> Path:
        raise ClientError("not in the fake")

    async def reload_config(self) -> list[str]:
        raise ClientError("not in the fake")

    async def usage(self, *, days: int, by: str) -> UsageReport:
        self._maybe_fail("usage")
        since, until = window(days, datetime.fromtimestamp(NOW, UTC) + timedelta(hours=23))
        rows = [r for r in self.usage_data if since <= r.started_at < until]
        groups, total = compute(rows, by=by, local_providers=("gaming-pc", "nuc"))  # type: ignore[arg-type]
        return UsageReport(by=by, days=days, since=since, until=until,  # type: ignore[arg-type]
                           groups=tuple(groups), total=total)

    async def keys(self) -> list[dict[str, Any]]:
        self._maybe_fail("keys")
        return list(self.key_list)

    async def create_key(self, name: str, *, expires: str | None, scopes: list[str],
                         priority: int | None) -> NewKey:
        made = key(len(self.key_list) + 1, name)
        self.key_list.append(made)
        return NewKey(made, "lai_0123456789abcdef0123456789abcdef")

    async def rotate_key(self, prefix: str, *, grace: str) -> NewKey:
        raise ClientError("not in the fake")

    async def set_key_enabled(self, prefix: str, enabled: bool) -> None:
        raise ClientError("not in the fake")

    async def delete_key(self, prefix: str) -> None:
        raise ClientError("not in the fake")

    async def key_limits(self) -> list[KeyLimits]:
        self._maybe_fail("key_limits")
        return list(self.limit_list)

    async def update_key_limits(self, name_or_prefix: str, edit: LimitsEdit
                                ) -> list[dict[str, Any]]:
        raise ClientError("not in the fake")
