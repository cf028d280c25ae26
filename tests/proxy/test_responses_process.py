"""The openai SDK's Responses client against `lai proxy` started as a real subprocess."""

from __future__ import annotations

import openai

from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.proxy.test_openai_sdk import proxy_process  # noqa: F401 - the fixture

TOOL = {"type": "function", "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}


def test_a_streamed_tool_round_trip_through_the_process(
    proxy_process: str, upstream: FakeUpstream  # noqa: F811
) -> None:
    upstream.script(
        Behaviour(tool_calls=[{"id": "call_9", "name": "read_file",
                               "arguments": '{"path": "README.md"}'}], chunks=3),
        Behaviour(content="The README says hello."),
    )
    client = openai.OpenAI(base_url=proxy_process + "/v1", api_key="unused", max_retries=0)
    with client.responses.stream(model="small", input="What does the README say?",
                                 tools=[TOOL]) as stream:  # type: ignore[list-item]
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        first = stream.get_final_response()
    assert "".join(deltas) == '{"path": "README.md"}' and len(deltas) == 3
    [call] = first.output
    assert call.type == "function_call" and call.call_id == "call_9"
    assert first.model == "small"
    second = client.responses.create(
        model="small", previous_response_id=first.id, tools=[TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": "call_9", "output": "hello"}])
    assert second.output_text == "The README says hello."
    tool_message = upstream.requests[-1].body["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": "call_9", "content": "hello"}
    assert client.responses.retrieve(second.id).output_text == "The README says hello."
