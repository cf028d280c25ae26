"""Admin: provider toggles ("gaming mode"), checks on demand, and the live event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, is_dataclass
from typing import Any

import orjson
from quart import Blueprint, Response

from lai.engine.events import Event
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


def event_dict(event: Event) -> dict[str, Any]:
    """An engine event as JSON-ready data, without message bodies or key material."""
    data: dict[str, Any] = asdict(event) if is_dataclass(event) else {}
    data.pop("request_messages", None)
    data.pop("response_message", None)
    ctx = data.pop("context", None)
    if ctx:
        data["request_id"] = ctx["request_id"]
        data["key_name"] = ctx["key_name"]
        data["conversation_id"] = ctx["conversation_id"]
    return data


@bp.get("/admin/events")
async def events() -> Response:
    """SSE: one ``data:`` line per engine event, plus a snapshot of providers first.

    A slow reader loses the oldest events (counted in a ``dropped`` event), never the
    server's memory.
    """
    rt = runtime()
    queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE_SIZE)
    dropped = 0

    def observe(event: Event) -> None:
        nonlocal dropped
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            dropped += 1
        queue.put_nowait(event)

    unsubscribe = rt.engine.events.subscribe(observe)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal dropped
        try:
            snapshot = {"kind": "snapshot",
                        "providers": [p.to_dict() for p in rt.engine.providers()]}
            yield b"data: " + orjson.dumps(snapshot) + b"\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if dropped:
                    yield b"data: " + orjson.dumps({"kind": "dropped", "count": dropped}) + b"\n\n"
                    dropped = 0
                yield b"data: " + orjson.dumps(event_dict(event)) + b"\n\n"
        finally:
            unsubscribe()

    response = Response(stream(), content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response
