"""OpenAI-compatible upstreams: local servers (vLLM, llama.cpp, Ollama) and cloud APIs.

The client's bytes go through untouched but for ``"provider"`` added to each JSON object,
which is spliced in before the closing brace instead of re-encoding the JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters.base import ParsedCompletion, StreamState, UpstreamRequest
from lai.engine.jsonbytes import members, splice
from lai.engine.sse import DONE, encode_event
from lai.engine.types import Usage


def auth_headers(provider: ProviderConfig) -> dict[str, str]:
    if provider.auth_type == "bearer" and provider.auth_secret:
        return {"authorization": f"Bearer {provider.auth_secret}"}
    if provider.auth_type == "api_key" and provider.auth_secret:
        return {"api-key": provider.auth_secret}
    return {}


def _usage(raw: Any, *, estimated: bool = False) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage(int(raw.get("prompt_tokens") or 0),
                     int(raw.get("completion_tokens") or 0), estimated)
    except (TypeError, ValueError):
        return None


class OpenAIStreamParser:
    """Passes OpenAI chunks through with ``"provider"`` and watches what they carry."""

    __slots__ = ("state", "_suffix", "_drop_usage_only")

    def __init__(self, provider_id: str, client_wants_usage: bool) -> None:
        self.state = StreamState()
        self._suffix = members({"provider": provider_id})
        self._drop_usage_only = not client_wants_usage

    def feed(self, event: bytes | None, data: bytes) -> bytes | None:
        if data == b"[DONE]":
            self.state.done = True
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return encode_event(data)  # not ours to judge; pass it on as it came
        if not isinstance(chunk, dict):
            return encode_event(data)
        state = self.state
        if "error" in chunk:
            err = chunk["error"]
            state.error = err.get("message") if isinstance(err, dict) else str(err)
        choices = chunk.get("choices")
        if chunk.get("usage"):
            state.usage = _usage(chunk["usage"]) or state.usage
            if not choices and self._drop_usage_only:
                return None  # lai asked for usage; the client did not
        if choices:
            for choice in choices:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                carried = False
                if text:
                    state.content.append(text)
                    carried = True
                for call in delta.get("tool_calls") or ():
                    state.add_tool_call_delta(call)
                    carried = True
                if carried:
                    state.content_events += 1
                if choice.get("finish_reason"):
                    state.finish_reason = choice["finish_reason"]
        return encode_event(splice(data, self._suffix))

    def end(self) -> bytes:
        return DONE


class OpenAIAdapter:
    """For ``type = "local"`` and ``type = "openai"`` providers."""

    def probe(self, provider: ProviderConfig) -> tuple[str, dict[str, str]]:
        return provider.base_url + provider.probe_path, auth_headers(provider)

    def chat_url(self, provider: ProviderConfig) -> str:
        if provider.type == "local":
            return provider.base_url + "/v1/chat/completions"
        return provider.base_url + "/chat/completions"

    def chat_request(
        self, provider: ProviderConfig, model: ModelConfig, body: dict[str, Any], stream: bool
    ) -> UpstreamRequest:
        out = dict(body)
        out["model"] = model.upstream_name
        if stream:
            # Ask for usage so lai can count tokens; the parser drops the extra chunk
            # when the client did not ask for it.
            opts = dict(out.get("stream_options") or {})
            opts["include_usage"] = True
            out["stream_options"] = opts
        headers = {"content-type": "application/json", **auth_headers(provider)}
        if stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest(self.chat_url(provider), headers, orjson.dumps(out))

    def parse_completion(self, raw: bytes, provider_id: str) -> ParsedCompletion:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError("upstream answered 200 with a body that is not JSON") from exc
        if not isinstance(doc, dict) or not doc.get("choices"):
            raise ValueError("upstream answered 200 without any choices")
        choice = doc["choices"][0] if isinstance(doc["choices"][0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else None
        return ParsedCompletion(
            body=splice(raw, members({"provider": provider_id})),
            usage=_usage(doc.get("usage")),
            message=message,
            finish_reason=choice.get("finish_reason"),
        )

    def stream_parser(self, provider_id: str, client_wants_usage: bool) -> OpenAIStreamParser:
        return OpenAIStreamParser(provider_id, client_wants_usage)

    def error_message(self, raw: bytes) -> str:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw[:200].decode("utf-8", "replace").strip()
            return text or "(empty body)"
        if isinstance(doc, dict):
            err = doc.get("error", doc.get("detail", doc.get("message")))
            if isinstance(err, dict):
                return str(err.get("message") or err)
            if err:
                return str(err)
        return raw[:200].decode("utf-8", "replace")
