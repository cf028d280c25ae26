"""The queue you can see (issue 14 item 7): answers of requests that waited for a slot
carry X-Queue-Wait-Ms, on every chat face, streamed or not; the engine's queue events
(``GET /admin/events``) list the waiting requests in serving order, as ``GET
/admin/queue`` does."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from lai.engine.events import RequestFinished
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

MSG = [{"role": "user", "content": "hi"}]


async def test_waiting_requests_carry_their_wait_and_their_places_are_in_the_events(
        proxy_factory, upstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")])
    finished: dict[str, float] = {}
    proxy.engine.events.subscribe(
        lambda e: finished.__setitem__(e.context.request_id, e.queue_ms)
        if isinstance(e, RequestFinished) else None)
    events: list[dict[str, Any]] = []

    async def read_events() -> None:
        async with proxy.http.stream("GET", "/admin/events") as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line[6:]))

    reader = asyncio.create_task(read_events())
    await upstream.wait_for_async(lambda: bool(events))  # the snapshot: subscribed

    # The holder streams one delta and stalls until its client leaves.
    upstream.script(Behaviour(stall_after=1))
    holder_cm = proxy.http.stream("POST", "/v1/chat/completions", json={
        "model": "m", "messages": MSG, "stream": True}, headers={"x-conversation-id": "holder"})
    holder = await holder_cm.__aenter__()
    try:
        assert holder.status_code == 200
        assert "x-queue-wait-ms" not in holder.headers  # it found a slot at once
        await upstream.wait_for_async(lambda: upstream.in_flight == 1)

        async def chat(rid: str) -> tuple[int, dict[str, str]]:
            async with proxy.http.stream("POST", "/v1/chat/completions", json={
                    "model": "m", "messages": MSG, "stream": True},
                    headers={"x-conversation-id": rid}) as r:
                await r.aread()
                return r.status_code, dict(r.headers)

        async def messages(rid: str) -> tuple[int, dict[str, str]]:
            r = await proxy.http.post("/v1/messages", json={
                "model": "m", "max_tokens": 16, "messages": MSG},
                headers={"x-conversation-id": rid})
            return r.status_code, dict(r.headers)

        async def responses(rid: str) -> tuple[int, dict[str, str]]:
            async with proxy.http.stream("POST", "/v1/responses", json={
                    "model": "m", "input": "hi", "stream": True},
                    headers={"x-conversation-id": rid}) as r:
                await r.aread()
                return r.status_code, dict(r.headers)

        waiting: list[asyncio.Task[tuple[int, dict[str, str]]]] = []
        for rid, call in (("q1", chat), ("q2", messages), ("q3", responses)):
            waiting.append(asyncio.create_task(call(rid)))
            depth = len(waiting)
            await upstream.wait_for_async(lambda d=depth: proxy.engine.slots.queue_depth == d)
        queue = (await proxy.http.get("/admin/queue")).json()["data"]
        assert [(q["conversation_id"], q["position"]) for q in queue] == [
            ("q1", 1), ("q2", 2), ("q3", 3)]
        ids = [q["request_id"] for q in queue]
        await upstream.wait_for_async(lambda: any(
            e["kind"] == "queue_changed" and e["waiting"] == ids for e in events))
    finally:
        await holder_cm.__aexit__(None, None, None)  # the holder leaves: q1 is served

    answers = await asyncio.gather(*waiting)
    for rid, (status, headers) in zip(ids, answers, strict=True):
        assert status == 200 and headers["x-request-id"] == rid
        waited = int(headers["x-queue-wait-ms"])
        assert waited > 0
        await upstream.wait_for_async(lambda r=rid: r in finished)
        assert abs(waited - finished[rid]) <= 1  # what the request's row records
    # the places moved up as each was served, and the queue ended empty
    await upstream.wait_for_async(lambda: any(
        e["kind"] == "queue_changed" and e["waiting"] == [] for e in events))
    shown = [e["waiting"] for e in events if e["kind"] == "queue_changed"]
    assert ids[1:] in shown and ids[2:] in shown
    assert upstream.max_in_flight == 1
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader


async def test_a_request_that_found_a_slot_at_once_has_no_queue_header(proxy_factory,
                                                                        upstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("m", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert r.status_code == 200 and "x-queue-wait-ms" not in r.headers
    r = await proxy.http.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert r.status_code == 200 and "x-queue-wait-ms" not in r.headers
