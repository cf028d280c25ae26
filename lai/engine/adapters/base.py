"""The upstream adapter interface: how lai talks to one kind of model server.

An adapter builds the upstream request from an OpenAI chat body, and turns the upstream's
answer back into OpenAI's shape (for OpenAI-compatible servers: the same bytes with
``"provider"`` added and ``"model"`` renamed). It does no IO: the engine sends and
receives.

Upstream output is checked, not trusted: a parser never raises. A chunk it cannot use
(not JSON, or a member of the wrong type) ends the client's stream with an OpenAI error
event; ``parse_completion`` raises ValueError for a body it cannot use, which the engine
treats as the provider failing (retry, failover, 502).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.types import Usage


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    content: bytes


@dataclass(slots=True)
class ParsedCompletion:
    """A non-streamed answer ready for the client, plus what lai records of it."""

    body: bytes
    usage: Usage | None
    message: dict[str, Any] | None
    finish_reason: str | None


@dataclass(slots=True)
class StreamState:
    """What a stream parser has seen so far (content, tool calls, usage, the end)."""

    content: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Usage | None = None
    finish_reason: str | None = None
    done: bool = False
    content_events: int = 0
    """Events that carried content or tool-call deltas (a rough completion token count)."""
    error: str | None = None
    """An error the upstream sent inside the stream, or why lai could not use a chunk
    (then ``done`` is set too and the parser has emitted the client's error event)."""

    def add_tool_call_delta(self, delta: dict[str, Any]) -> None:
        """Merge one OpenAI tool-call delta. Members of the wrong type are ignored (the
        parsers reject such chunks before they get here; this never raises)."""
        index = delta.get("index", 0)
        if not isinstance(index, int):
            index = 0
        call = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.get("id") and isinstance(delta["id"], str):
            call["id"] = delta["id"]
        if delta.get("type") and isinstance(delta["type"], str):
            call["type"] = delta["type"]
        fn = delta.get("function")
        if not isinstance(fn, dict):
            return
        if fn.get("name") and isinstance(fn["name"], str):
            call["function"]["name"] += fn["name"]
        if fn.get("arguments") and isinstance(fn["arguments"], str):
            call["function"]["arguments"] += fn["arguments"]

    def message(self) -> dict[str, Any]:
        text = "".join(c for c in self.content if isinstance(c, str))
        msg: dict[str, Any] = {"role": "assistant", "content": text or None}
        if self.tool_calls:
            msg["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return msg


Redact = Callable[[str], str]
"""Takes secrets out of a message (``lai.engine.redact.Redactor``)."""


def no_redaction(text: str) -> str:
    return text


class StreamParser(Protocol):
    state: StreamState

    def feed(self, event: bytes | None, data: bytes) -> bytes | None:
        """One upstream SSE event in; the client's SSE event bytes out (None to drop it).

        Never raises: what it cannot use sets ``state.error`` and ``state.done`` and
        returns an OpenAI error event."""
        ...

    def end(self) -> bytes:
        """The bytes that end the client's stream (``data: [DONE]``)."""
        ...


class Adapter(Protocol):
    def probe(self, provider: ProviderConfig) -> tuple[str, dict[str, str]]:
        """URL and headers of a health probe that spends no tokens."""
        ...

    def chat_request(
        self, provider: ProviderConfig, model: ModelConfig, body: dict[str, Any], stream: bool
    ) -> UpstreamRequest:
        """The upstream request for an OpenAI chat body (already validated)."""
        ...

    def parse_completion(
        self, raw: bytes, provider_id: str, *, model: str | None = None
    ) -> ParsedCompletion:
        """Turn an upstream 200 body into the client's JSON with ``"provider"`` added and,
        when ``model`` is given, ``"model"`` set to it (else the upstream's is kept).

        Raises ValueError when the body is not a usable answer (not JSON, no choices, a
        member of the wrong type).
        """
        ...

    def stream_parser(
        self,
        provider_id: str,
        client_wants_usage: bool,
        *,
        model: str | None = None,
        redact: Redact = no_redaction,
    ) -> StreamParser:
        """A parser for one streamed answer. ``model`` replaces the upstream's model in
        every chunk; ``redact`` cleans the error messages it relays."""
        ...

    def error_message(self, raw: bytes) -> str:
        """The human message inside an upstream error body (or a short excerpt)."""
        ...
