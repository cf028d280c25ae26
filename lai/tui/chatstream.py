"""Turning a streamed chat answer (OpenAI SSE bytes) into :data:`ChatEvent` values.

Both clients read the same bytes: the attached one from the proxy, the embedded one from
``EngineStream``. Each chunk carries ``"provider"``; the last one may carry ``usage``; a
stream that broke half-way ends with an OpenAI error body, which becomes a ClientError.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.engine.sse import SSEDecoder
from lai.tui.client import ChatDelta, ChatEvent, ChatFinished, ClientError


class ChatStreamReader:
    """Feed it SSE bytes; it answers chat events. ``finish()`` gives the closing summary."""

    def __init__(self, provider: str | None = None, model: str | None = None) -> None:
        self._decoder = SSEDecoder()
        self.provider = provider
        self.model = model
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.deltas = 0
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[ChatEvent]:
        """The events in ``chunk``. Raises ClientError for an error event."""
        out: list[ChatEvent] = []
        for _event, data in self._decoder.feed(chunk):
            out.extend(self._event(data))
        return out

    def close(self) -> list[ChatEvent]:
        """Events left when the byte stream ends."""
        out: list[ChatEvent] = []
        for _event, data in self._decoder.close():
            out.extend(self._event(data))
        return out

    def _event(self, data: bytes) -> list[ChatEvent]:
        if data.strip() == b"[DONE]":
            self.done = True
            return []
        try:
            obj: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []  # a keep-alive or a line from a server we do not understand
        if not isinstance(obj, dict):
            return []
        if "error" in obj:
            raise ClientError.from_body(obj, 502)
        self.provider = obj.get("provider") or self.provider
        self.model = obj.get("model") if self.model is None else self.model
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
        out: list[ChatEvent] = []
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                self.deltas += 1
                out.append(ChatDelta(text))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> ChatFinished:
        """The summary: usage when the upstream sent it, else the deltas counted."""
        return ChatFinished(
            provider=self.provider,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens
            if self.completion_tokens is not None else self.deltas,
            finish_reason=self.finish_reason,
        )
