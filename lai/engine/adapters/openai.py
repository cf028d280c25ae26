"""OpenAI-compatible upstreams: local servers (vLLM, llama.cpp, Ollama) and cloud APIs.

The client's bytes go through untouched but for ``"provider"`` added to each JSON object,
which is spliced in before the closing brace, and ``"model"`` set to the name the client
asked for (``MemberReplacer``), instead of re-encoding the JSON. Behind llama-cpp-python
the upstream's own model name is the server's file path, which clients must not see.

Every chunk and body is checked before it is used: the members lai reads (``choices``,
``delta``, ``message``, ``content``, ``tool_calls`` and their ``function``,
``finish_reason``) must have the types the OpenAI API gives them (null counts as
absent). A stream chunk that fails, or a data line that is not JSON, ends the client's
stream with an ``upstream_error`` event; such a body is a ValueError.
"""

from __future__ import annotations

import functools
from typing import Any, NoReturn

import orjson

from lai.config.models import ModelConfig, ProviderConfig
from lai.engine.adapters.base import (
    ParsedCompletion,
    Redact,
    StreamState,
    UpstreamRequest,
    no_redaction,
)
from lai.engine.adapters.checks import Unusable, count, excerpt, expect, kind_of, not_json
from lai.engine.jsonbytes import MemberReplacer, members, replace_member, splice
from lai.engine.sse import DONE, encode_event, error_event
from lai.engine.types import Usage
from lai.errors import UpstreamError


def auth_headers(provider: ProviderConfig) -> dict[str, str]:
    if provider.auth_type == "bearer" and provider.auth_secret:
        return {"authorization": f"Bearer {provider.auth_secret}"}
    if provider.auth_type == "api_key" and provider.auth_secret:
        return {"api-key": provider.auth_secret}
    return {}


@functools.lru_cache(maxsize=256)  # providers come and go with reloads
def _provider_member(provider_id: str) -> bytes:
    """``members({"provider": provider_id})``, encoded once per provider."""
    return members({"provider": provider_id})


def _usage(raw: Any, *, estimated: bool = False) -> Usage | None:
    """OpenAI usage as lai's; None when ``raw`` is not an object. Odd counts read as 0."""
    if not isinstance(raw, dict):
        return None
    return Usage(count(raw.get("prompt_tokens")), count(raw.get("completion_tokens")),
                 estimated)


def _check_tool_calls(calls: Any, where: str, *, delta: bool) -> None:
    expect(calls, list, where, "an array")
    for i, call in enumerate(calls or ()):
        here = f"{where}[{i}]"
        if not isinstance(call, dict):
            raise Unusable(f"{here} is {kind_of(call)}, not an object")
        expect(call.get("index"), int, f"{here}.index", "an integer")
        expect(call.get("id"), str, f"{here}.id", "a string")
        expect(call.get("type"), str, f"{here}.type", "a string")
        fn = call.get("function")
        if fn is None and not delta:
            raise Unusable(f"{here}.function is missing")
        expect(fn, dict, f"{here}.function", "an object")
        if isinstance(fn, dict):
            expect(fn.get("name"), str, f"{here}.function.name", "a string")
            expect(fn.get("arguments"), str, f"{here}.function.arguments", "a string")


def _check_part(part: dict[str, Any], where: str, *, delta: bool) -> None:
    """A stream ``delta`` or an answer's ``message``."""
    expect(part.get("content"), str, f"{where}.content", "a string")
    expect(part.get("role"), str, f"{where}.role", "a string")
    _check_tool_calls(part.get("tool_calls"), f"{where}.tool_calls", delta=delta)


def _check_choices(choices: Any, part: str) -> list[dict[str, Any]]:
    """``choices`` as a list of objects whose ``part`` ("delta" or "message") is usable."""
    expect(choices, list, "choices", "an array")
    for i, choice in enumerate(choices or ()):
        where = f"choices[{i}]"
        if not isinstance(choice, dict):
            raise Unusable(f"{where} is {kind_of(choice)}, not an object")
        body = choice.get(part)
        if body is None and part == "message":
            raise Unusable(f"{where}.message is missing")
        expect(body, dict, f"{where}.{part}", "an object")
        if body is not None:
            _check_part(body, f"{where}.{part}", delta=part == "delta")
        expect(choice.get("finish_reason"), str, f"{where}.finish_reason", "a string")
    return choices or []


def _reject(choices: Any) -> NoReturn:
    """Raise Unusable naming what is wrong in ``choices`` (known to be wrong)."""
    _check_choices(choices, "delta")
    raise Unusable("choices has a shape lai cannot use")


def _error_of(doc: dict[str, Any]) -> Any:
    """The error an upstream sent in place of an answer: ``{"error": ...}``, or vLLM's
    older ``{"object": "error", "message": ...}``; None when there is none."""
    err = doc.get("error")
    if err is None and doc.get("object") == "error":
        return doc
    return err


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        message = err.get("message")
        return str(message) if message else str(err)
    return str(err)


class OpenAIStreamParser:
    """Passes OpenAI chunks through with ``"provider"`` (and the client's ``"model"``) and
    watches what they carry. Never raises (``lai.engine.adapters.base``)."""

    __slots__ = ("state", "_provider", "_model", "_rename", "_suffix", "_suffix_model",
                 "_drop_usage_only", "_redact", "_failed")

    def __init__(self, provider_id: str, client_wants_usage: bool, *,
                 model: str | None = None, redact: Redact = no_redaction) -> None:
        self.state = StreamState()
        self._provider = provider_id
        self._model = model
        self._rename = MemberReplacer("model", model) if model is not None else None
        self._suffix = _provider_member(provider_id)
        self._suffix_model: bytes | None = None
        """For chunks without a ``model``: made when the first one comes (most have it)."""
        self._drop_usage_only = not client_wants_usage
        self._redact = redact
        self._failed = False

    def feed(self, event: bytes | None, data: bytes) -> bytes | None:
        if self._failed:
            return None
        try:
            return self._feed(data)
        except Unusable as exc:
            return self._fail(f"a malformed stream chunk ({exc})")
        except Exception as exc:  # a shape no check foresaw must still end the stream cleanly
            return self._fail(f"a stream chunk lai could not read ({type(exc).__name__})")

    def _feed(self, data: bytes) -> bytes | None:
        state = self.state
        if data[:1] != b"{":  # the common chunk skips this
            stripped = data.strip()
            if stripped == b"[DONE]":
                state.done = True
                return None
            if not stripped:
                return None  # an empty data line carries nothing
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(f"a data line that is not JSON: {excerpt(data.strip())}")
        if type(chunk) is not dict:
            raise Unusable(f"the chunk is {kind_of(chunk)}, not an object")
        err = _error_of(chunk)
        if err is not None:
            return self._upstream_error(chunk, err)
        choices = chunk.get("choices")
        if choices is not None and type(choices) is not list:
            _reject(choices)
        usage = chunk.get("usage")
        if usage:
            state.usage = _usage(usage) or state.usage
            if not choices and self._drop_usage_only:
                return None  # lai asked for usage; the client did not
        # The checks of _check_choices, inline: this runs for every token of every stream.
        for i, choice in enumerate(choices or ()):
            if type(choice) is not dict:
                _reject(choices)
            delta = choice.get("delta")
            if delta is None:
                delta = {}
            elif type(delta) is not dict:
                _reject(choices)
            text = delta.get("content")
            finish = choice.get("finish_reason")
            if ((text is not None and type(text) is not str)
                    or (finish is not None and type(finish) is not str)):
                _reject(choices)
            calls = delta.get("tool_calls")
            if calls is not None:
                _check_tool_calls(calls, f"choices[{i}].delta.tool_calls", delta=True)
            carried = False
            if text:
                state.content.append(text)
                carried = True
            for call in calls or ():
                state.add_tool_call_delta(call)
                carried = True
            if carried:
                state.content_events += 1
            if finish:
                state.finish_reason = finish
        return encode_event(self._client_bytes(data, chunk))

    def _client_bytes(self, data: bytes, chunk: dict[str, Any]) -> bytes:
        """The chunk as the client gets it: bytes kept, model renamed, provider added."""
        # A chunk split over data: lines is re-encoded on one line; so is one with a bare
        # CR in its whitespace, which the client's SSE parser would take for a line end.
        if b"\n" not in data and b"\r" not in data:
            if "model" not in chunk:
                if self._suffix_model is None:
                    self._suffix_model = (
                        members({"model": self._model, "provider": self._provider})
                        if self._model is not None else self._suffix)
                return splice(data, self._suffix_model)
            if self._rename is None:
                return splice(data, self._suffix)
            renamed = self._rename(data)
            if renamed is not None:
                return splice(renamed, self._suffix)
        out = dict(chunk)
        if self._model is not None:
            out["model"] = self._model
        out["provider"] = self._provider
        return orjson.dumps(out)

    def _upstream_error(self, chunk: dict[str, Any], err: Any) -> bytes:
        """An error the upstream sent in the stream, relayed in OpenAI's shape: its
        message redacted, its other members kept only when they are short scalars."""
        message = self._redact(_error_text(err))
        self.state.error = message
        shaped: dict[str, Any] = {"message": message, "type": "api_error", "code": None,
                                  "param": None}
        if isinstance(err, dict):
            for key in ("type", "code", "param"):
                value = err.get(key)
                if isinstance(value, str):
                    shaped[key] = self._redact(value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    shaped[key] = value
        return error_event(orjson.dumps({"error": shaped, "provider": self._provider}))

    def _fail(self, what: str) -> bytes:
        """End the stream: record why, and give the client an OpenAI error event."""
        self._failed = True
        what = self._redact(what)
        state = self.state
        state.error = f"sent {what}"
        state.done = True
        err = UpstreamError(f"{self._provider} sent {what}; the answer is incomplete.")
        return error_event(orjson.dumps({**err.to_dict(), "provider": self._provider}))

    def end(self) -> bytes:
        return DONE


def check_completion(doc: Any) -> dict[str, Any]:
    """The first choice of an OpenAI ``chat.completion`` body, checked.

    Raises ValueError (Unusable) naming what is wrong.
    """
    if not isinstance(doc, dict):
        raise Unusable(f"upstream answered 200 with {kind_of(doc)}, not a JSON object")
    err = _error_of(doc)
    if err is not None and not doc.get("choices"):
        raise Unusable(f"upstream answered 200 with an error: {_error_text(err)}")
    if not doc.get("choices"):
        raise Unusable("upstream answered 200 without any choices")
    try:
        choices = _check_choices(doc["choices"], "message")
    except Unusable as exc:
        raise Unusable(f"upstream answered 200 with a malformed body: {exc}") from None
    return choices[0]


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

    def parse_completion(
        self, raw: bytes, provider_id: str, *, model: str | None = None
    ) -> ParsedCompletion:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Unusable(not_json(raw)) from None
        choice = check_completion(doc)
        body = raw
        if model is not None:
            if "model" not in doc:
                body = splice(body, members({"model": model}))
            else:
                renamed = replace_member(body, b'"model"', orjson.dumps(model))
                body = renamed if renamed is not None else orjson.dumps({**doc, "model": model})
        return ParsedCompletion(
            body=splice(body, _provider_member(provider_id)),
            usage=_usage(doc.get("usage")),
            message=choice.get("message"),
            finish_reason=choice.get("finish_reason"),
        )

    def stream_parser(self, provider_id: str, client_wants_usage: bool, *,
                      model: str | None = None,
                      redact: Redact = no_redaction) -> OpenAIStreamParser:
        return OpenAIStreamParser(provider_id, client_wants_usage, model=model, redact=redact)

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
