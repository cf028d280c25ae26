"""GET /health: liveness plus a per-provider summary. Never needs a key."""

from __future__ import annotations

from quart import Blueprint, Response

from lai.proxy.deps import json_response, runtime

bp = Blueprint("health", __name__)


@bp.get("/health")
async def health() -> Response:
    providers = runtime().engine.providers()
    usable = [p for p in providers if p.status in ("healthy", "degraded", "unknown")]
    status = "ok" if usable else ("degraded" if providers else "ok")
    return json_response({
        "status": status,
        "providers": {
            p.id: {"status": p.status, "active_requests": p.active_requests,
                   "max_concurrent": p.max_concurrent, "queue_depth": p.queue_depth,
                   "latency_ms": p.latency_ms}
            for p in providers
        },
    })
