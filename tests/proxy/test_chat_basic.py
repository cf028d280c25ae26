"""Chat completions through the real proxy to a fake upstream: shapes and passthrough."""

from __future__ import annotations

import asyncio

import orjson

from tests.fakes.upstream import Behaviour
from tests.harness import model, provider


def sse_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


async def test_non_streamed_answer_carries_provider_and_headers(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("small", "box", upstream_id="Org/Small-1B")])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "small", "messages": [{"role": "user", "content": "hello there"}],
        "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "f"}}],
        "n": 1, "stop": ["x"], "logprobs": False, "my_extra_field": {"a": 1},
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "box"
    assert body["choices"][0]["message"]["content"]
    assert r.headers["X-Provider"] == "box"
    assert r.headers["X-Model"] == "small"
    assert r.headers["X-Conversation-ID"]
    sent = upstream.requests[-1].body
    assert sent["model"] == "Org/Small-1B"
    for key in ("temperature", "tools", "n", "stop", "logprobs", "my_extra_field"):
        assert key in sent and sent[key] == {
            "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "f"}}],
            "n": 1, "stop": ["x"], "logprobs": False, "my_extra_field": {"a": 1}}[key]


async def test_streamed_answer_adds_provider_to_each_chunk_and_ends_with_done(
    proxy_factory, upstream
):
    upstream.default = Behaviour(chunks=5)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "auto", "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["provider"] == "box" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.split() == [f"tok{i}" for i in range(5)]
    # lai asked the upstream for usage; the client did not, so no usage-only chunk.
    assert all(c["choices"] for c in chunks)
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


async def test_each_streamed_chunk_reaches_the_client_as_the_upstream_sends_it(
    proxy_factory, upstream
):
    upstream.default = Behaviour(chunks=4, delay=0.4)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    async with proxy.http.stream("POST", "/v1/chat/completions", json={
            "model": "small", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                arrivals.append(loop.time())
    assert len(arrivals) >= 4
    # Buffering would bunch the chunks together at the end; they come ~0.4 s apart.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) > 0.2
