"""The fake upstream behaves like an OpenAI-compatible server, and as scripted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import Behaviour, FakeUpstream

MESSAGES = [{"role": "user", "content": "hello there world"}]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


def chat(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "m1", "messages": MESSAGES, "stream": stream, **extra}


async def sse(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of a stream, JSON-decoded, "[DONE]" kept as a string."""
    events = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_plain_answer_has_openai_shape_and_is_recorded(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        f"{upstream.url}/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer k"}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "tok0 tok1 tok2"},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    (seen,) = upstream.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer k"
    assert seen.body["messages"] == MESSAGES
    assert upstream.chat_count == 1


async def test_cloud_path_health_and_models(
    upstream_factory: Any, client: httpx.AsyncClient
) -> None:
    fake = upstream_factory(models=["a", "b"])
    r = await client.post(f"{fake.url}/chat/completions", json=chat())
    assert r.json()["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
    assert (await client.get(f"{fake.url}/health")).json() == {"status": "ok"}
    for path in ("/v1/models", "/models"):
        listed = (await client.get(fake.url + path)).json()
        assert listed["object"] == "list"
        assert [m["id"] for m in listed["data"]] == ["a", "b"]
    assert fake.health_count == 1
    fake.default = Behaviour(health_status=503)
    assert (await client.get(f"{fake.url}/health")).status_code == 503


async def test_stream_events_arrive_one_at_a_time(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.default = Behaviour(delay=0.2, chunks=3)
    arrivals: list[float] = []
    events: list[Any] = []
    body = chat(stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", f"{upstream.url}/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"] == "text/event-stream"
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    # Three 0.2 s waits separate the role event from [DONE]; a buffered stream would
    # deliver them together.
    assert arrivals[-1] - arrivals[0] >= 0.2
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[0]["model"] == "m1"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text == "tok0 tok1 tok2"
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-3])
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert events[-1] == "[DONE]"


async def test_stream_tool_calls(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    call = {"id": "call_x", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    upstream.default = Behaviour(tool_calls=[call])
    async with client.stream(
        "POST", f"{upstream.url}/v1/chat/completions", json=chat(stream=True)
    ) as r:
        events = await sse(r)
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "call_x"
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"Oslo"}'
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_status_mode_with_retry_after(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.default = Behaviour(mode="status", status=429, retry_after=7)
    r = await client.post(f"{upstream.url}/v1/chat/completions", json=chat(stream=True))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.json()["error"]["type"] == "rate_limit_error"


async def test_refuse_then_start_on_the_same_port(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    url = upstream.url
    assert (await client.get(f"{url}/health")).status_code == 200  # leaves a pooled connection
    upstream.refuse()
    # The pooled connection was closed too, so httpx dials again and is refused.
    with pytest.raises(httpx.ConnectError):
        await client.get(f"{url}/health")
    upstream.start()
    assert upstream.url == url
    assert (await client.get(f"{url}/health")).status_code == 200


async def test_cut_breaks_the_stream_and_the_plain_answer(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script(Behaviour(mode="cut", cut_after=2), Behaviour(mode="cut"))
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", f"{upstream.url}/v1/chat/completions", json=chat(stream=True)
        ) as r:
            async for line in r.aiter_lines():
                seen.append(line)
    assert sum(line.startswith("data: {") for line in seen) == 3  # role + 2 deltas
    assert "data: [DONE]" not in seen
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{upstream.url}/v1/chat/completions", json=chat())
    assert upstream.disconnects == 0


async def test_truncate_is_an_empty_success(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.default = Behaviour(mode="truncate")
    async with client.stream(
        "POST", f"{upstream.url}/v1/chat/completions", json=chat(stream=True)
    ) as r:
        assert r.status_code == 200
        assert await sse(r) == ["[DONE]"]
    r = await client.post(f"{upstream.url}/v1/chat/completions", json=chat())
    assert r.status_code == 200
    assert r.json()["choices"] == []


async def test_reset_and_hang_and_disconnects(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script(Behaviour(mode="reset"), Behaviour(mode="hang"))
    with pytest.raises(httpx.TransportError):
        await client.post(f"{upstream.url}/v1/chat/completions", json=chat())
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{upstream.url}/v1/chat/completions", json=chat(), timeout=0.2)
    await upstream.wait_for_async(lambda: upstream.disconnects == 1 and upstream.in_flight == 0)


async def test_max_in_flight_counts_concurrent_requests(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.default = Behaviour(delay=0.3)
    replies = await asyncio.gather(
        *(client.post(f"{upstream.url}/v1/chat/completions", json=chat()) for _ in range(5))
    )
    assert [r.status_code for r in replies] == [200] * 5
    assert upstream.max_in_flight == 5
    assert upstream.in_flight == 0
    upstream.reset_stats()
    assert (upstream.max_in_flight, upstream.chat_count, upstream.requests) == (0, 0, [])


async def test_script_queue_is_used_in_order_then_default(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script(Behaviour(mode="status", status=500), Behaviour(mode="status", status=503))
    statuses = [
        (await client.post(f"{upstream.url}/v1/chat/completions", json=chat())).status_code
        for _ in range(4)
    ]
    assert statuses == [500, 503, 200, 200]


def test_serves_a_sync_client_from_another_thread(upstream: FakeUpstream) -> None:
    upstream.default = Behaviour(content="one two")
    with httpx.Client() as c:
        r = c.post(f"{upstream.url}/v1/chat/completions", json=chat())
    assert r.json()["choices"][0]["message"]["content"] == "one two"
    upstream.wait_for(lambda: upstream.chat_count == 1, timeout=1)


async def test_raw_answers_are_sent_exactly_as_given(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    url = f"{upstream.url}/v1/chat/completions"
    upstream.script(
        Behaviour(raw_body=b"<html>oops</html>", content_type="text/html",
                  raw_headers={"x-extra": "1"}),
        Behaviour(raw_events=[{"choices": ["x"]}, b"data: not json\n\n", "data: [DONE]\n\n"]),
        Behaviour(model="/models/x.gguf"),
        Behaviour(model="/models/x.gguf"),
    )
    r = await client.post(url, json=chat())
    assert (r.status_code, r.text) == (200, "<html>oops</html>")
    assert r.headers["content-type"] == "text/html" and r.headers["x-extra"] == "1"
    r = await client.post(url, json=chat(stream=True))
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text == 'data: {"choices":["x"]}\n\ndata: not json\n\ndata: [DONE]\n\n'
    assert (await client.post(url, json=chat())).json()["model"] == "/models/x.gguf"
    async with client.stream("POST", url, json=chat(stream=True)) as r:
        events = await sse(r)
    assert {e["model"] for e in events if e != "[DONE]"} == {"/models/x.gguf"}
