"""Anthropic Messages requests passed through to upstreams that speak Messages natively.

For ``/v1/messages`` traffic the face (``lai.proxy.routes.messages``) uses this adapter
for ``type = "anthropic"`` providers and for servers marked ``messages_api = true``
(llama.cpp's server and vLLM serve ``/v1/messages``): the client's own body goes
upstream with only ``model`` renamed to the model's ``upstream_id`` and ``max_tokens``
lowered to the model's limit (with ``thinking.budget_tokens`` kept below it, as Anthropic
requires), and the answer comes back as the upstream wrote it: the stream's events are
the upstream's bytes. The client's ``anthropic-beta`` header is not forwarded. A local
server does not get Claude Code's billing block (``BILLING_PREFIX``) at the top of the
system prompt.

What lai records and counts (usage, the answer, the stop reason, errors in the stream)
is read on the way by ``AnthropicStreamParser``, whose OpenAI output is discarded; it
also holds the first events back until content arrives, so a stream that fails before
any content can still fail over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters import adapter_for
from lai.engine.adapters.anthropic import AnthropicAdapter, AnthropicStreamParser
from lai.engine.adapters.anthropic_request import ANTHROPIC_VERSION, anthropic_headers, api_root
from lai.engine.adapters.base import (
    Adapter,
    ParsedCompletion,
    Redact,
    StreamState,
    UpstreamRequest,
    no_redaction,
)
from lai.engine.adapters.openai import auth_headers

MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``thinking.budget_tokens``."""


BILLING_PREFIX = "x-anthropic-billing-header:"
"""Claude Code's first system block: billing metadata for Anthropic's API, not an
instruction for the model. Its hash changes from session to session, so left at the top
of the prompt it would keep a local server from reusing the cached prefill of the whole
system prompt and tools in the next session."""


def is_billing_block(block: Any) -> bool:
    """Whether a system block is Claude Code's billing metadata (``BILLING_PREFIX``)."""
    return (isinstance(block, dict) and block.get("type") == "text"
            and isinstance(block.get("text"), str) and block["text"].startswith(BILLING_PREFIX))


def without_billing(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without Claude Code's billing block in ``system`` (the same body when it
    has none), for every upstream but Anthropic's own."""
    system = body.get("system")
    if not isinstance(system, list) or not any(is_billing_block(b) for b in system):
        return body
    return {**body, "system": [b for b in system if not is_billing_block(b)]}


def speaks_messages(provider: ProviderConfig) -> bool:
    """Whether Messages requests go to this provider as they are."""
    return provider.type == "anthropic" or provider.messages_api


def messages_url(provider: ProviderConfig) -> str:
    if provider.type == "anthropic":
        return api_root(provider) + "/v1/messages"
    if provider.type == "local":
        return provider.base_url + "/v1/messages"
    return provider.base_url + "/messages"  # an openai-type base URL already ends in /v1


def upstream_body(body: dict[str, Any], model: ModelConfig, stream: bool) -> dict[str, Any]:
    """The client's Messages body for ``model``: renamed, max_tokens within the model's
    limit, a thinking budget below max_tokens (dropped when no budget fits)."""
    out = dict(body)
    out["model"] = model.upstream_name
    max_tokens = out.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > model.max_tokens:
        out["max_tokens"] = max_tokens = model.max_tokens
    thinking = out.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int) \
            and isinstance(max_tokens, int) and thinking["budget_tokens"] >= max_tokens:
        if max_tokens > MIN_THINKING_BUDGET:
            out["thinking"] = {**thinking, "budget_tokens": max_tokens - 1}
        else:
            out.pop("thinking")
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return out


def _type_of(data: bytes) -> bytes | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind.encode() if isinstance(kind, str) and kind.isidentifier() else None


class MessagesStreamParser:
    """Passes the upstream's Anthropic events on unchanged; see the module docstring."""

    __slots__ = ("state", "_inner", "_held", "_open")

    def __init__(self, provider_id: str) -> None:
        self._inner = AnthropicStreamParser(provider_id, client_wants_usage=False)
        self.state: StreamState = self._inner.state
        self._held: list[bytes] = []
        self._open = False

    def feed(self, event: bytes | None, data: bytes) -> bytes | None:
        signal = self._inner.feed(event, data)
        if not event:
            event = _type_of(data)  # the SDKs dispatch on the event line; name it
        raw = (b"event: " + event + b"\n" if event else b"") + b"data: " + data + b"\n\n"
        if self._open:
            return raw
        self._held.append(raw)
        if signal is None and not self.state.done:
            return None  # message_start, ping, an empty block start: held back
        self._open = True
        out, self._held = b"".join(self._held), []
        return out

    def end(self) -> bytes:
        return b""


class MessagesPassthrough:
    """The adapter for one Messages request to a provider that speaks Messages."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def probe(self, provider: ProviderConfig) -> tuple[str, dict[str, str]]:
        return adapter_for(provider).probe(provider)

    def chat_request(
        self, provider: ProviderConfig, model: ModelConfig, body: dict[str, Any], stream: bool
    ) -> UpstreamRequest:
        """``body`` (the OpenAI translation the engine routed by) is not sent."""
        if provider.type == "anthropic":
            headers = {"content-type": "application/json", **anthropic_headers(provider)}
        else:
            headers = {"content-type": "application/json",
                       "anthropic-version": ANTHROPIC_VERSION, **auth_headers(provider)}
        if stream:
            headers["accept"] = "text/event-stream"
        body = self.body if provider.type == "anthropic" else without_billing(self.body)
        return UpstreamRequest(messages_url(provider), headers,
                               orjson.dumps(upstream_body(body, model, stream)))

    def parse_completion(self, raw: bytes, provider_id: str, *,
                         model: str | None = None) -> ParsedCompletion:
        """The upstream's message as it came; raises ValueError when it is not one.
        (``model`` is not applied here: the passthrough keeps the upstream's bytes.)"""
        parsed = AnthropicAdapter().parse_completion(raw, provider_id)
        return ParsedCompletion(body=raw, usage=parsed.usage, message=parsed.message,
                                finish_reason=parsed.finish_reason)

    def stream_parser(self, provider_id: str, client_wants_usage: bool, *,
                      model: str | None = None,
                      redact: Redact = no_redaction) -> MessagesStreamParser:
        return MessagesStreamParser(provider_id)

    def error_message(self, raw: bytes) -> str:
        return AnthropicAdapter().error_message(raw)


def messages_adapters(body: dict[str, Any]) -> Callable[[ProviderConfig], Adapter]:
    """The engine's ``adapters`` choice for one Messages request: passthrough where the
    provider speaks Messages, the provider's usual adapter elsewhere."""
    passthrough = MessagesPassthrough(body)

    def choose(provider: ProviderConfig) -> Adapter:
        return passthrough if speaks_messages(provider) else adapter_for(provider)

    return choose
