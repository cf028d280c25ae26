"""The official anthropic SDK against a real lai proxy in front of fake upstreams: text
and tool calls, streamed and not, count_tokens, and a tool round trip that reaches the
upstream as OpenAI tool messages (local providers) or tool_result blocks (anthropic)."""

from __future__ import annotations

import anthropic
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider

TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def client(proxy, key: str = "unused") -> anthropic.AsyncAnthropic:  # type: ignore[no-untyped-def]
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=key, max_retries=0)


@pytest.fixture
async def local(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("qwen", "box", aliases=["claude-sonnet-*"])])
    return proxy, upstream


async def test_create_answers_text_with_the_requested_model_and_usage(local) -> None:
    proxy, upstream = local
    upstream.default = Behaviour(content="Sunny and warm.")
    msg = await client(proxy).messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                              system="Be brief.", messages=ASK)
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-sonnet-4-5"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Sunny and warm."
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 3 and msg.usage.input_tokens > 0
    sent = upstream.requests[-1].body
    assert sent["model"] == "qwen"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 100


async def test_stream_text_arrives_in_order_and_completes(local) -> None:
    proxy, upstream = local
    upstream.default = Behaviour(content=["Hel", "lo", " there"])
    async with client(proxy).messages.stream(model="qwen", max_tokens=50,
                                             messages=ASK) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["Hel", "lo", " there"]
    assert final.content[0].text == "Hello there"
    assert final.stop_reason == "end_turn" and final.model == "qwen"
    assert final.usage.output_tokens == 3


@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_round_trip_reaches_the_local_upstream_as_tool_messages(
    local, streamed: bool
) -> None:
    proxy, upstream = local
    upstream.script(Behaviour(tool_calls=[{"id": "call_abc", "name": "get_weather",
                                           "arguments": '{"city": "Paris"}'}], chunks=4))
    c = client(proxy)
    if streamed:
        async with c.messages.stream(model="qwen", max_tokens=50, messages=ASK,
                                     tools=[TOOL]) as stream:
            first = await stream.get_final_message()
    else:
        first = await c.messages.create(model="qwen", max_tokens=50, messages=ASK,
                                        tools=[TOOL])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == ("call_abc", "get_weather", {"city": "Paris"})
    sent = upstream.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == TOOL["input_schema"]

    upstream.default = Behaviour(content="It is sunny.")
    follow = await c.messages.create(model="qwen", max_tokens=50, tools=[TOOL], messages=[
        *ASK, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "22 C, sunny"}]}])
    assert follow.content[0].text == "It is sunny."
    msgs = upstream.requests[-1].body["messages"]
    assert msgs[1]["role"] == "assistant"
    assert msgs[1]["tool_calls"][0]["id"] == "call_abc"
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_abc", "content": "22 C, sunny"}


async def test_count_tokens_answers_lai_estimate(local) -> None:
    proxy, _ = local
    c = client(proxy)
    small = await c.messages.count_tokens(model="qwen", messages=ASK)
    big = await c.messages.count_tokens(model="claude-sonnet-4", messages=ASK, tools=[TOOL],
                                        system="x" * 4000)
    assert 0 < small.input_tokens < big.input_tokens
    assert big.input_tokens > 1000
    with pytest.raises(anthropic.NotFoundError):
        await c.messages.count_tokens(model="nope", messages=ASK)


async def test_errors_are_anthropic_shaped_with_the_status(proxy_factory, upstream) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("qwen", "box")],
                                auth=True)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await client(proxy, "lai_" + "0" * 32).messages.create(model="qwen", max_tokens=5,
                                                               messages=ASK)
    assert auth.value.body["error"]["type"] == "authentication_error"
    assert auth.value.response.json()["type"] == "error"
    r = await proxy.http.post("/v1/messages", json={"model": "qwen", "messages": ASK})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


async def test_bad_requests_and_unknown_models_get_anthropic_errors(local) -> None:
    proxy, upstream = local
    c = client(proxy)
    with pytest.raises(anthropic.NotFoundError) as nf:
        await c.messages.create(model="gpt-nothing", max_tokens=5, messages=ASK)
    assert nf.value.body["type"] == "error"
    assert nf.value.body["error"]["type"] == "not_found_error"
    assert "gpt-nothing" in nf.value.body["error"]["message"]
    for body in ({"model": "qwen", "messages": ASK},
                 {"model": "qwen", "max_tokens": 5, "messages": []},
                 {"model": "qwen", "max_tokens": 5, "messages": [{"role": "tool",
                                                                  "content": "x"}]}):
        r = await proxy.http.post("/v1/messages", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"
    r = await proxy.http.post("/v1/messages", content=b"{not json")
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = await proxy.http.get("/v1/messages")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = await proxy.http.post("/v1/messages/batches", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert upstream.chat_count == 0


@pytest.fixture
async def claude(proxy_factory):  # type: ignore[no-untyped-def]
    with FakeAnthropic() as fake:
        proxy = await proxy_factory(
            [provider("claude", fake.url, type="anthropic", auth_type="api_key",
                      auth_secret="sk-test")],
            [model("sonnet", "claude", upstream_id="claude-test-1", aliases=["claude-*"])])
        yield proxy, fake


async def test_anthropic_provider_text_and_tool_round_trip(claude) -> None:
    proxy, fake = claude
    fake.tool_calls = [("get_weather", {"city": "Paris"})]
    fake.text = ""
    c = client(proxy)
    async with c.messages.stream(model="claude-opus-4", max_tokens=50, messages=ASK,
                                 tools=[TOOL]) as stream:
        first = await stream.get_final_message()
    assert first.model == "claude-opus-4" and first.stop_reason == "tool_use"
    [use] = first.content
    assert use.type == "tool_use" and use.input == {"city": "Paris"}
    assert fake.message_requests[-1].body["model"] == "claude-test-1"

    fake.tool_calls, fake.text = [], "Sunny."
    follow = await c.messages.create(model="claude-opus-4", max_tokens=50, tools=[TOOL],
                                     messages=[*ASK, {"role": "assistant",
                                                      "content": [use.model_dump()]},
                                               {"role": "user", "content": [
                                                   {"type": "tool_result",
                                                    "tool_use_id": use.id,
                                                    "content": "22 C"}]}])
    assert follow.content[0].text == "Sunny."
    sent = fake.message_requests[-1].body["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[1]["content"][0]["id"] == use.id
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": use.id,
                                     "content": "22 C"}


async def test_an_openai_type_provider_is_translated_too(proxy_factory, upstream) -> None:
    upstream.default = Behaviour(content="From the cloud.")
    proxy = await proxy_factory(
        [provider("cloud", upstream.url + "/v1", type="openai", auth_type="bearer",
                  auth_secret="sk-cloud")],
        [model("gpt", "cloud", upstream_id="gpt-4o-mini", aliases=["claude-*"])])
    async with client(proxy).messages.stream(model="claude-haiku-4", max_tokens=20,
                                             messages=ASK) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "From the cloud." and final.model == "claude-haiku-4"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == "Bearer sk-cloud"
    assert "top_k" not in sent.body and "thinking" not in sent.body
