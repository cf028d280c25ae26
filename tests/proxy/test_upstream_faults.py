"""The upstream-fault matrix: every odd chunk shape and bad body an upstream can send,
through the real proxy, seen by the real openai SDK.

Whatever the upstream sends, the client gets a clean answer or an ``APIError`` (never
``APIConnectionError`` or a ``JSONDecodeError``), every stream ends with ``[DONE]``,
no data line the client gets is anything but JSON, and the request row is in the store
with the failure recorded. Before the first byte reached the client, a bad answer is
the provider failing: another provider takes the request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from sqlmodel import select

from lai.store.models import RequestRecord
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import RunningProxy, model, provider

ROLE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                     "finish_reason": None}]}
HELLO = {**ROLE, "choices": [{"index": 0, "delta": {"content": "hello"},
                              "finish_reason": None}]}
FINISH = {**ROLE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
DONE = b"data: [DONE]\n\n"


def chunk(**choice: Any) -> dict[str, Any]:
    return {**ROLE, "choices": [{"index": 0, "finish_reason": None, **choice}]}


BAD_CHUNKS: dict[str, dict[str, Any] | bytes] = {
    "choice is a string": {**ROLE, "choices": ["x"]},
    "delta is a string": chunk(delta="str"),
    "tool_calls is a string": chunk(delta={"tool_calls": "nope"}),
    "function is a number": chunk(delta={"tool_calls": [{"index": 0, "id": "c", "function": 5}]}),
    "tool call index is text": chunk(delta={"tool_calls": [{"index": "0", "function": {}}]}),
    "arguments is an object": chunk(
        delta={"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}),
    "content is a number": chunk(delta={"content": 123}),
    "finish_reason is a list": chunk(delta={}, finish_reason=["stop"]),
    "choices is an object": {**ROLE, "choices": {"0": {"delta": {"content": "x"}}}},
    "chunk is an array": b"data: [1, 2]\n\n",
    "chunk is a string": b'data: "hello"\n\n',
    "data line not JSON": b"data: not json\n\n",
    "truncated chunk": b'data: {"id":"c1","choices":[{"index":0,"delta":{"cont\n\n',
}

BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "HTML page": (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "text/html"),
    "empty body": (b"", "application/json"),
    "truncated JSON": (b'{"id":"x","choices":[{"message":{"cont', "application/json"),
    "array": (b"[1, 2]", "application/json"),
    "no choices": (b'{"id":"x","object":"chat.completion"}', "application/json"),
    "empty choices": (b'{"id":"x","choices":[]}', "application/json"),
    "choices is an object": (b'{"choices":{"0":{"message":{"content":"x"}}}}', "application/json"),
    "choices is a string": (b'{"choices":"x"}', "application/json"),
    "choice is a number": (b'{"choices":[7]}', "application/json"),
    "message is a string": (b'{"choices":[{"message":"hi"}]}', "application/json"),
    "content is a number": (b'{"choices":[{"message":{"role":"assistant","content":123}}]}',
                            "application/json"),
    "tool_calls is a string": (b'{"choices":[{"message":{"tool_calls":"nope"}}]}',
                               "application/json"),
    "function is a number": (b'{"choices":[{"message":{"tool_calls":[{"id":"c","function":5}]}}]}',
                             "application/json"),
    "choice without message": (b'{"choices":[{"index":0,"finish_reason":"stop"}]}',
                               "application/json"),
    "an error with status 200": (b'{"error":{"message":"model crashed"}}', "application/json"),
    "a vLLM error object": (b'{"object":"error","message":"model crashed","code":500}',
                            "application/json"),
}


def raw_events(*events: dict[str, Any] | bytes) -> list[dict[str, Any] | bytes]:
    return list(events)


def sdk(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


async def rows(proxy: RunningProxy) -> list[RequestRecord]:
    await proxy.runtime.recorder.flush()
    with proxy.runtime.store.session() as s:
        return list(s.exec(select(RequestRecord)).all())


def assert_clean_sse(text: str, case: str = "") -> list[dict[str, Any]]:
    """Every data line the client got is JSON, and the last is [DONE]."""
    lines = [ln[len("data: "):] for ln in text.split("\n") if ln.startswith("data:")]
    assert lines and lines[-1] == "[DONE]", (case, text)
    return [json.loads(ln) for ln in lines[:-1]]


async def stream_with_sdk(
    client: openai.AsyncOpenAI, mdl: str = "small"
) -> tuple[str, Exception | None]:
    text, error = "", None
    try:
        stream = await client.chat.completions.create(
            model=mdl, messages=[{"role": "user", "content": "hi"}], stream=True)
        async for part in stream:
            if part.choices and part.choices[0].delta.content:
                text += part.choices[0].delta.content
    except Exception as exc:  # noqa: BLE001 - the test sorts what the SDK raised
        error = exc
    return text, error


def assert_api_error(error: Exception | None, case: str = "") -> openai.APIError:
    assert isinstance(error, openai.APIError), (case, repr(error))
    assert not isinstance(error, openai.APIConnectionError), (case, repr(error))
    return error


# --- streams that go bad after the first byte reached the client ------------------------
#
# Each matrix runs every case through one proxy (a proxy start is most of a case's
# cost); a probe between cases (POST /admin/providers/{id}/check) clears the failures
# the previous case counted, so a provider is never unhealthy from an earlier case.


async def reset_health(proxy: RunningProxy, *provider_ids: str) -> None:
    for pid in provider_ids:
        r = await proxy.http.post(f"/admin/providers/{pid}/check")
        assert r.status_code == 200 and r.json()["consecutive_failures"] == 0, r.text


async def test_bad_chunk_mid_stream_ends_with_an_error_event_and_done(
    proxy_factory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("small", "box", is_default=True)])
    client = sdk(proxy)
    for name, bad in BAD_CHUNKS.items():
        events = raw_events(ROLE, HELLO, bad, HELLO, FINISH, DONE)
        upstream.script(Behaviour(raw_events=events), Behaviour(raw_events=events))

        text, error = await stream_with_sdk(client)
        assert text == "hello", name  # what came before the bad chunk, nothing after it
        err = assert_api_error(error, name)
        assert "incomplete" in err.message, name

        r = await proxy.http.post("/v1/chat/completions", json={
            "model": "small", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, name
        got = assert_clean_sse(r.text, name)
        assert got[-1]["error"]["code"] == "upstream_error", name
        assert [e["choices"][0]["delta"].get("content") for e in got[:-1]] == ["", "hello"], name

        recorded = (await rows(proxy))[-2:]
        for row in recorded:
            assert (row.status, row.error_code) == ("error", "upstream_error"), (name, row)
            assert row.streaming and row.provider_id == "box", name
            assert "box: sent a" in (row.error_message or ""), (name, row.error_message)
        snap = proxy.engine.provider("box")
        assert snap.active_requests == 0 and snap.consecutive_failures == 2, name
        await reset_health(proxy, "box")
    assert len(await rows(proxy)) == 2 * len(BAD_CHUNKS)


# --- streams whose first chunk is bad: the provider failed, the next one answers -------


async def test_bad_first_chunk_fails_over_to_the_next_provider(
    proxy_factory, upstream_factory
) -> None:
    broken, good = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", broken.url, priority=1), provider("b", good.url, priority=2)],
        [model("small", "a"), model("small", "b")])
    client = sdk(proxy)
    for name, bad in BAD_CHUNKS.items():
        broken.default = Behaviour(raw_events=raw_events(bad, HELLO, FINISH, DONE))
        text, error = await stream_with_sdk(client)
        assert error is None and text == "tok0 tok1 tok2", (name, error)
        row = (await rows(proxy))[-1]
        assert row.status == "success" and row.provider_id == "b", name
        assert row.failover_from == ["a"], name
        assert "sent a" in (proxy.engine.provider("a").last_error or ""), name
        await reset_health(proxy, "a")


async def test_bad_first_chunk_on_the_only_provider_is_a_502(
    proxy_factory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    upstream.default = Behaviour(raw_events=raw_events(b"data: not json\n\n", DONE))
    text, error = await stream_with_sdk(sdk(proxy))
    err = assert_api_error(error)
    assert isinstance(err, openai.APIStatusError) and err.status_code == 502
    assert err.code == "upstream_error" and "not JSON" in err.message
    (row,) = await rows(proxy)
    assert (row.status, row.http_status, row.error_code) == ("error", 502, "upstream_error")
    assert "not JSON" in (row.error_message or "")


async def test_html_answer_to_a_stream_is_a_502(proxy_factory, upstream: FakeUpstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    upstream.default = Behaviour(raw_body=BAD_BODIES["HTML page"][0], content_type="text/html")
    _, error = await stream_with_sdk(sdk(proxy))
    err = assert_api_error(error)
    assert isinstance(err, openai.APIStatusError) and err.status_code == 502
    (row,) = await rows(proxy)
    assert row.status == "error" and row.error_code == "upstream_error"


# --- odd shapes that are understood -----------------------------------------------------


async def test_chunks_lai_understands_are_relayed_whatever_their_layout(
    proxy_factory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    upstream.default = Behaviour(raw_events=raw_events(
        ROLE,
        b"data:\n\n",  # an empty data line
        b": a comment line\n\n",
        b'data: {"id":"c1","model":"m",\r"choices":[]}\n\n',  # a bare CR as whitespace
        # One chunk split over two data: lines (legal SSE), with CRLF line ends.
        b'data: {"id":"c1","model":"m",\r\n'
        b'data: "choices":[{"index":0,"delta":{"content":"hi"}}]}\r\n\r\n',
        {**ROLE, "choices": None, "usage": {"prompt_tokens": "3", "completion_tokens": "x"}},
        FINISH, b"data: [DONE] \n\n"))
    text, error = await stream_with_sdk(sdk(proxy))
    assert error is None and text == "hi"
    (row,) = await rows(proxy)
    assert row.status == "success" and row.prompt_tokens == 3


# --- non-streamed bodies ------------------------------------------------------------------


async def test_bad_body_is_retried_then_a_502(proxy_factory, upstream: FakeUpstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    client = sdk(proxy)
    for name, (body, content_type) in BAD_BODIES.items():
        upstream.reset_stats()
        upstream.default = Behaviour(raw_body=body, content_type=content_type)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}])
        err = caught.value
        assert err.status_code == 502 and err.code == "upstream_error", name
        assert "upstream answered 200" in err.message, (name, err.message)
        assert upstream.chat_count == 2, name  # one retry
        row = (await rows(proxy))[-1]
        assert (row.status, row.http_status, row.error_code) == (
            "error", 502, "upstream_error"), name
        assert "upstream answered 200" in (row.error_message or ""), name
        assert proxy.engine.provider("box").active_requests == 0, name
        await reset_health(proxy, "box")


async def test_bad_body_fails_over_to_the_next_provider(proxy_factory, upstream_factory) -> None:
    broken, good = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", broken.url, priority=1), provider("b", good.url, priority=2)],
        [model("small", "a"), model("small", "b")])
    broken.default = Behaviour(raw_body=b'{"choices":[{"message":{"content":123}}]}')
    done = await sdk(proxy).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "tok0 tok1 tok2"
    (row,) = await rows(proxy)
    assert row.status == "success" and row.provider_id == "b" and row.failover_from == ["a"]


# --- the same robustness behind an Anthropic upstream ------------------------------------


@pytest.fixture
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-ant-test-0123456789") as fake:
        yield fake


def claude(fake: FakeAnthropic, **kw: Any) -> dict[str, Any]:
    return provider("claude", fake.url, type="anthropic", auth_type="api_key",
                    auth_secret=fake.api_key, **kw)


def sse(name: str, **payload: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) \
        + b"\n\n"


A_START = sse("message_start", message={"id": "msg_1", "type": "message", "role": "assistant",
                                        "model": "claude-internal-2025", "content": [],
                                        "usage": {"input_tokens": 3, "output_tokens": 1}})
A_TEXT = sse("content_block_start", index=0, content_block={"type": "text", "text": ""})
A_HELLO = sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "hello"})
A_END = [sse("content_block_stop", index=0),
         sse("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}),
         sse("message_stop")]

BAD_EVENTS: dict[str, bytes] = {
    "text is a number": sse("content_block_delta", index=0,
                            delta={"type": "text_delta", "text": 123}),
    "delta is a string": sse("content_block_delta", index=0, delta="str"),
    "index is a list": sse("content_block_stop", index=[0]),
    "tool name is a number": sse("content_block_start", index=1, content_block={
        "type": "tool_use", "id": "toolu_1", "name": 5, "input": {}}),
    "partial_json is an object": sse("content_block_delta", index=0, delta={
        "type": "input_json_delta", "partial_json": {"a": 1}}),
    "stop_reason is a list": sse("message_delta", delta={"stop_reason": ["end_turn"]}),
    "type is a number": b"data: " + orjson.dumps({"type": 5}) + b"\n\n",
    "data line not JSON": b"event: content_block_delta\ndata: not json\n\n",
}


async def test_bad_anthropic_event_mid_stream_ends_with_an_error_event(
    proxy_factory, claude_fake: FakeAnthropic
) -> None:
    proxy = await proxy_factory([claude(claude_fake)], [model("sonnet", "claude")])
    client = sdk(proxy)
    for name, bad in BAD_EVENTS.items():
        claude_fake.raw_events = [A_START, A_TEXT, A_HELLO, bad, A_HELLO, *A_END]
        text, error = await stream_with_sdk(client, "sonnet")
        assert text == "hello", name
        assert_api_error(error, name)
        r = await proxy.http.post("/v1/chat/completions", json={
            "model": "sonnet", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        got = assert_clean_sse(r.text, name)
        assert got[-1]["error"]["code"] == "upstream_error", name
        recorded = (await rows(proxy))[-2:]
        assert [(row.status, row.error_code) for row in recorded] == [
            ("error", "upstream_error")] * 2, name
        await reset_health(proxy, "claude")


async def test_bad_first_anthropic_event_fails_over(
    proxy_factory, claude_fake: FakeAnthropic, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory(
        [claude(claude_fake, priority=1), provider("box", upstream.url, priority=2)],
        [model("small", "claude"), model("small", "box")])
    client = sdk(proxy)
    for name, bad in BAD_EVENTS.items():
        claude_fake.raw_events = [A_START, bad, A_TEXT, A_HELLO, *A_END]
        text, error = await stream_with_sdk(client)
        assert error is None and text == "tok0 tok1 tok2", (name, error)
        row = (await rows(proxy))[-1]
        assert row.provider_id == "box" and row.failover_from == ["claude"], name
        await reset_health(proxy, "claude")


BAD_MESSAGES: dict[str, bytes] = {
    "HTML page": b"<html><body>oops</body></html>",
    "not a message": b'{"type":"completion","completion":"hi"}',
    "content is a string": b'{"type":"message","content":"hi"}',
    "block is a string": b'{"type":"message","content":["hi"]}',
    "text is a number": b'{"type":"message","content":[{"type":"text","text":5}]}',
    "tool input is a string": b'{"type":"message","content":[{"type":"tool_use","id":"t",'
                              b'"name":"f","input":"{}"}]}',
    "tool id missing": b'{"type":"message","content":[{"type":"tool_use","name":"f",'
                       b'"input":{}}]}',
    "stop_reason is a number": b'{"type":"message","content":[],"stop_reason":3}',
}


async def test_bad_anthropic_message_is_a_502(proxy_factory, claude_fake: FakeAnthropic) -> None:
    proxy = await proxy_factory([claude(claude_fake)], [model("sonnet", "claude")])
    client = sdk(proxy)
    for name, body in BAD_MESSAGES.items():
        claude_fake.raw_body = body
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502, name
        assert caught.value.code == "upstream_error", name
        row = (await rows(proxy))[-1]
        assert row.status == "error" and row.error_code == "upstream_error", name
        await reset_health(proxy, "claude")


async def test_body_that_does_not_decode_is_a_502(proxy_factory, upstream_factory) -> None:
    """A body that says gzip and is not: httpx cannot decode it; the provider failed."""
    broken, good = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", broken.url, priority=1), provider("b", good.url, priority=2)],
        [model("small", "a"), model("small", "b")])
    broken.default = Behaviour(raw_body=b"this is not gzip", raw_headers={
        "content-encoding": "gzip"})
    done = await sdk(proxy).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "tok0 tok1 tok2"
    (row,) = await rows(proxy)
    assert row.provider_id == "b" and row.failover_from == ["a"]
    stream = await sdk(proxy).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [c async for c in stream]


async def test_a_gzip_answer_is_decoded(proxy_factory, upstream_factory) -> None:
    """An upstream that compresses its answer (lai asks for gzip, as httpx does)."""
    import gzip

    up = upstream_factory()
    proxy = await proxy_factory([provider("a", up.url)], [model("small", "a")])
    answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "unzipped"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    up.default = Behaviour(raw_body=gzip.compress(orjson.dumps(answer)),
                           raw_headers={"content-encoding": "gzip"})
    done = await sdk(proxy).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "unzipped"
    assert "gzip" in up.requests[-1].headers.get("accept-encoding", "")


async def test_a_parser_that_raises_still_ends_the_stream_cleanly(
    proxy_factory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belt and braces: parsers never raise by construction, so the bug is simulated."""
    from lai.engine.adapters.openai import OpenAIStreamParser

    real = OpenAIStreamParser._feed
    calls = {"n": 0}

    def flaky(self: OpenAIStreamParser, data: bytes) -> bytes | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug in a parser")
        return real(self, data)

    monkeypatch.setattr(OpenAIStreamParser, "_feed", flaky)
    monkeypatch.setattr(OpenAIStreamParser, "feed",
                        lambda self, event, data: self._feed(data))
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    upstream.default = Behaviour(chunks=5)
    text, error = await stream_with_sdk(sdk(proxy))
    assert text == "tok0"  # role chunk, one word, then the failure
    assert "incomplete" in assert_api_error(error).message
    (row,) = await rows(proxy)
    assert row.status == "error" and row.error_code == "upstream_error"
    assert proxy.engine.provider("box").active_requests == 0
