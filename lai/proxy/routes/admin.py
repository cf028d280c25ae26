"""Admin: provider toggles ("gaming mode"), checks on demand, and the live event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from quart import Blueprint, Response, request

from lai.engine.events import follow
from lai.errors import InvalidRequest
from lai.proxy.deps import json_response, runtime

bp = Blueprint("admin", __name__)

EVENT_QUEUE_SIZE = 1000


@bp.post("/admin/providers/<provider_id>/enable")
async def enable(provider_id: str) -> Response:
    return json_response(runtime().engine.set_enabled(provider_id, True).to_dict())


@bp.post("/admin/providers/<provider_id>/disable")
async def disable(provider_id: str) -> Response:
    return json_response(runtime().engine.set_enabled(provider_id, False).to_dict())


@bp.post("/admin/providers/<provider_id>/check")
async def check(provider_id: str) -> Response:
    snapshot = await runtime().engine.check(provider_id)
    return json_response(snapshot.to_dict())


@bp.get("/admin/requests")
async def in_flight() -> Response:
    """The requests holding a slot right now, with the tokens streamed so far."""
    data = [f.to_dict() for f in runtime().engine.in_flight()]
    return json_response({"object": "list", "data": data, "has_more": False})


@bp.post("/admin/config/reload")
async def reload_config() -> Response:
    """Read the config file again and apply it (as SIGHUP does). 200 with the changes, or
    400 ``config_invalid`` with the one-line error of ``lai config check`` (nothing
    changed)."""
    result = await runtime().reload()
    if not result.ok:
        raise InvalidRequest(result.error or "the config was not reloaded",
                             code="config_invalid")
    return json_response({"object": "config.reload", **result.to_dict()})


@bp.get("/admin/queue")
async def queue() -> Response:
    """The requests waiting for a slot, in the order they will be served."""
    data = [q.to_dict() for q in runtime().engine.queued()]
    return json_response({"object": "list", "data": data, "has_more": False})


@bp.get("/admin/failures")
async def failures() -> Response:
    """The last failed requests and failed-over attempts, newest first (kept in memory,
    the last 50)."""
    data = [f.to_dict() for f in runtime().engine.failures.recent()]
    return json_response({"object": "list", "data": data, "has_more": False})


@bp.post("/admin/flush")
async def flush() -> Response:
    """Wait until the requests already answered (of ``?conversation_id=``, else all) are
    stored, so that a client reading the store itself (the attached TUI) sees them.
    Answers ``{"flushed": bool}``: false when the database did not take them in time."""
    recorder = runtime().recorder
    cid = request.args.get("conversation_id") or None
    flushed = True if recorder is None else await recorder.settle(cid)
    return json_response({"object": "recorder.flush", "flushed": flushed})


@bp.get("/admin/events")
async def events() -> Response:
    """SSE: a snapshot of the providers, then one ``data:`` line per engine event (see
    ``lai.engine.events.follow``: a slow reader gets a ``dropped`` count, never the
    server's memory), and a comment line every 15 s of quiet."""
    engine = runtime().engine

    async def stream() -> AsyncIterator[bytes]:
        live = follow(engine.events, lambda: {
            "kind": "snapshot", "providers": [p.to_dict() for p in engine.providers()]
        }, size=EVENT_QUEUE_SIZE, idle=15)
        async for item in live:
            yield b": keep-alive\n\n" if item is None else b"data: " + orjson.dumps(item) + b"\n\n"

    response = Response(stream(), content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response
