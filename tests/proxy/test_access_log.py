"""What an operator sees: x-request-id on every answer (the id of the stored request row
and of the access log line), one access line per request, warnings for requests that
failed on lai's or an upstream's side, and every answer counted by route in /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from lai.store.db import open_store
from lai.store.keys import create_key
from lai.store.requests import get_request
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider
from tests.proxy.metrics_helpers import labels, scrape, series

CHAT = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lai.access"]


async def stored(proxy, request_id: str):  # type: ignore[no-untyped-def]
    for _ in range(400):
        row = await asyncio.to_thread(get_request, proxy.runtime.store, request_id)
        if row is not None:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"request {request_id} was never recorded")


@pytest.fixture
def agent_key(tmp_path: Path) -> str:
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    issued = create_key(store, "agent-ci")
    store.dispose()
    return issued.raw_key


async def test_x_request_id_is_the_stored_rows_id_and_the_access_logs(
    proxy_factory, upstream, agent_key, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="lai.access")
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    auth = {"Authorization": f"Bearer {agent_key}",
            # A client's own id is not taken over: lai's is the row's unique key.
            "x-request-id": "client-chosen"}
    ids = []
    for stream in (False, True):
        r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": stream},
                                  headers=auth)
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        assert rid.startswith("req_") and rid != "client-chosen"
        row = await stored(proxy, rid)
        assert (row.status, row.provider_id, row.streaming, row.key_name) \
            == ("success", "box", stream, "agent-ci")
        ids.append(rid)
    # An engine error (unknown model) is recorded under the id its 404 carries.
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "nope"},
                              headers=auth)
    assert r.status_code == 404
    row = await stored(proxy, r.headers["x-request-id"])
    assert row.status == "error"
    ids.append(r.headers["x-request-id"])
    assert len(set(ids)) == 3

    lines = access_lines(caplog)
    for rid, status, provider_ in zip(ids, (200, 200, 404), ("box", "box", "-"), strict=True):
        [line] = [x for x in lines if rid in x]
        assert line.startswith(f"POST /v1/chat/completions {status} ")
        assert "key=agent-ci" in line and f"provider={provider_}" in line


async def test_every_answer_has_an_x_request_id_quart_routes_and_errors_too(
    proxy_factory, upstream, agent_key, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="lai.access")
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    auth = {"Authorization": f"Bearer {agent_key}"}
    answers = [
        await proxy.http.get("/health"),
        await proxy.http.get("/v1/models", headers=auth),
        await proxy.http.get("/v1/models"),  # 401
        await proxy.http.get("/v1/nothing-here", headers=auth),  # 404
        await proxy.http.delete("/v1/models", headers=auth),  # 405
        await proxy.http.post("/v1/chat/completions", content=b"{bad", headers=auth),  # 400
        await proxy.http.get("/v1/conversations?limit=x", headers=auth),  # 400
        await proxy.http.get("/metrics"),
    ]
    ids = [r.headers.get("x-request-id") for r in answers]
    assert all(i and i.startswith("req_") for i in ids), ids
    assert len(set(ids)) == len(ids)
    lines = access_lines(caplog)
    expected = [("GET", "/health", 200, "-"), ("GET", "/v1/models", 200, "agent-ci"),
                ("GET", "/v1/models", 401, "-"), ("GET", "/v1/nothing-here", 404, "agent-ci"),
                ("DELETE", "/v1/models", 405, "agent-ci"),
                ("POST", "/v1/chat/completions", 400, "agent-ci"),
                ("GET", "/v1/conversations", 400, "agent-ci"), ("GET", "/metrics", 200, "-")]
    for rid, (method, path, status, key) in zip(ids, expected, strict=True):
        [line] = [x for x in lines if rid in x]
        assert line.startswith(f"{method} {path} {status} "), line
        assert f"key={key} " in line, line
    # The query string (search terms) stays out of the log.
    assert not any("limit=x" in x for x in lines)


async def test_access_log_json_and_off(proxy_factory, upstream, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lai.access")
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                access_log_format="json")
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    entries = [json.loads(line) for line in access_lines(caplog)]
    [entry] = [e for e in entries if e["method"] == "POST"]
    assert entry["request_id"] == r.headers["x-request-id"]
    assert (entry["method"], entry["path"], entry["status"], entry["provider"], entry["key"]) \
        == ("POST", "/v1/chat/completions", 200, "box", None)
    assert entry["duration_ms"] >= 0 and entry["time"]

    caplog.clear()
    quiet = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                access_log=False)
    r = await quiet.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.headers["x-request-id"]
    await quiet.http.get("/v1/nothing")
    assert access_lines(caplog) == []


async def test_queue_timeouts_upstream_failures_and_broken_streams_are_warned(
    proxy_factory, upstream, caplog
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("small", "box")], queue_timeout=0.2)

    def warnings_for(rid: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and rid in r.getMessage()]

    upstream.script(Behaviour(delay=1.0))
    slow = asyncio.create_task(proxy.http.post("/v1/chat/completions", json=CHAT))
    await upstream.wait_for_async(lambda: upstream.in_flight == 1)
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    [line] = warnings_for(r.headers["x-request-id"])
    assert "503 provider_capacity_exceeded" in line
    assert (await slow).status_code == 200

    upstream.script(Behaviour(mode="status", status=500), Behaviour(mode="status", status=500))
    r = await proxy.http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    lines = warnings_for(r.headers["x-request-id"])
    assert any("failing over to nothing" in x for x in lines)  # the engine's failover line
    assert any("502 upstream_error" in x for x in lines)

    upstream.script(Behaviour(mode="cut", cut_after=2))
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    [line] = warnings_for(r.headers["x-request-id"])
    assert "stream from box broke after its first byte" in line


async def test_every_answer_is_counted_by_route_and_status(proxy_factory, upstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    for path in ("/nope", "/v1/nope", "/nope"):
        assert (await proxy.http.get(path)).status_code == 404
    assert (await proxy.http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert (await proxy.http.get("/v1/conversations/none-such")).status_code == 404
    text = await scrape(proxy)
    counted = series(text, "local_ai_http_responses_total")
    assert counted[labels(route="unmatched", status="404")] == 3
    assert counted[labels(route="/v1/chat/completions", status="200")] == 1
    assert counted[labels(route="/v1/conversations/<conversation_id>", status="404")] == 1
    assert counted[labels(route="/health", status="200")] >= 1  # the harness's start-up probe
