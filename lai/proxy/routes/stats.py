"""GET /v1/stats?days=30&by=day|model|provider|key: the figures of ``lai stats``, as JSON.

The answer is ``lai.store.stats.UsageReport.to_dict()``: ``by``, ``days``, ``since``,
``until``, ``groups`` (one object per group) and ``total``; the same numbers
``lai stats --json`` prints. Like every ``/v1`` endpoint it needs a key when
``server.auth`` is on (the app-wide auth hook sees to that); ``by=key`` shows every key's
usage, so it needs scope ``admin`` (or the admin socket).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, g, request

from lai.errors import InvalidRequest, PermissionDenied
from lai.proxy.auth import ADMIN_SCOPE, over_unix_socket
from lai.proxy.deps import json_response, runtime
from lai.runtime import Runtime
from lai.store.db import Store, open_store
from lai.store.keys import list_keys
from lai.store.keyusage import LimitUse, read_usage
from lai.store.stats import GROUPINGS, GroupBy, usage_stats

bp = Blueprint("stats", __name__)

MAX_DAYS = 3660
_STORE_KEY = "lai.stats.store"


def _days(raw: str | None) -> int:
    if raw is None or raw == "":
        return 30
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5):
        raise InvalidRequest("days must be a whole number of days.", param="days")
    days = int(raw)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be between 1 and {MAX_DAYS}.", param="days")
    return days


def _by(raw: str | None) -> GroupBy:
    by = raw or "day"
    if by not in GROUPINGS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPINGS)}.", param="by")
    return by  # type: ignore[return-value]


async def _store(rt: Runtime) -> Store:
    # The runtime's own store when it has one; otherwise one opened here once, migrated
    # to head as every command that touches the store does.
    own: Any = getattr(rt, "store", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    store: Store | None = rt.extensions.get(_STORE_KEY)
    if store is None:
        store = open_store(rt.settings.server.database_url)
        await asyncio.to_thread(store.upgrade)
        store = rt.extensions.setdefault(_STORE_KEY, store)  # a concurrent first call won
    return store


@bp.get("/v1/stats")
async def stats() -> Response:
    """Usage statistics. Raises InvalidRequest (400) for a bad ``days`` or ``by``."""
    days = _days(request.args.get("days"))
    by = _by(request.args.get("by"))
    rt = runtime()
    if by == "key" and rt.settings.server.auth and not over_unix_socket(request.scope):
        key: Any = getattr(g, "lai_key", None)
        if key is None or not key.has_scope(ADMIN_SCOPE):
            raise PermissionDenied(
                "Usage by key shows every key's traffic: it needs a key with scope "
                "'admin' (or the admin socket).", param="by")
    store = await _store(rt)
    report = await asyncio.to_thread(usage_stats, store, rt.settings, days=days, by=by)
    answer = report.to_dict()
    if by == "key":
        await _add_limits(rt, store, answer)
    return json_response(answer)


async def _add_limits(rt: Runtime, store: Store, answer: dict[str, Any]) -> None:
    """Each key group gets ``limits``: its use of its rpm, tpm and budgets now."""
    records = await asyncio.to_thread(list_keys, store)
    quotas = {r.name: r.quota for r in records if r.is_current}
    now = datetime.fromtimestamp(rt.clock.time(), UTC)
    for group in answer["groups"]:
        name, quota = group["group"], quotas.get(group["group"])
        uses: list[LimitUse] = []
        if quota is not None and rt.usage is not None:
            uses = await rt.usage.usage(name, quota)
        elif quota is not None:
            uses = await asyncio.to_thread(read_usage, store, name, quota, now)
        group["limits"] = [u.to_dict() for u in uses]
