"""A small fake of the Anthropic Messages API for tests: a real HTTP server on 127.0.0.1.

`FakeAnthropic` serves `POST /v1/messages` (plain, and `stream: true` as SSE with the real
event names: message_start, content_block_start, ping, content_block_delta with
text_delta / input_json_delta, content_block_stop, message_delta, message_stop) and
`GET /v1/models`, from a `ThreadingHTTPServer` in a background thread. It checks what the
real API checks first (`x-api-key`, `anthropic-version`, `model`, `max_tokens`,
`messages`) and answers Anthropic-shaped errors, so a translation mistake shows up as the
400 a user would get. Every request is recorded in `requests`.

Knobs, set from the test: `text` (streamed one word per delta), `tool_calls`
(`(name, input)` pairs, each streamed as a tool_use block in `json_chunks` pieces),
`status` (answer every message request with that error, e.g. 529 overloaded or 429),
`stream_error` (a stream sends message_start, then an overloaded `error` event),
`error_message` (the message of `status` errors). For answers the real API never gives
(upstream-fault tests): `model` (the model name answers carry; default the request's),
`raw_body` (every message request gets these bytes with a 200), `raw_events` (a stream
request gets exactly these SSE events, bytes as written).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_WORDS = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Recorded:
    """One request as received; header names lower-case, body parsed JSON (or None)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeAnthropic:
    """See the module docstring. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, *, api_key: str = "sk-test",
                 models: tuple[str, ...] = ("claude-test-1",)) -> None:
        self.api_key = api_key
        self.models = models
        self.text = "Hello from the fake Claude."
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.json_chunks = 3
        self.status: int | None = None
        self.stream_error = False
        self.error_message: str | None = None
        self.model: str | None = None
        self.raw_body: bytes | None = None
        self.raw_events: list[bytes] | None = None
        self.requests: list[Recorded] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeAnthropic:
        """Listen on a free port; returns once connections are accepted."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval so stop() returns at once rather than in 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="fake-anthropic")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API root, as a provider's `endpoint` (lai appends /v1/messages)."""
        assert self._server is not None, "FakeAnthropic is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    # answers ------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any
               ) -> tuple[int, bytes] | list[bytes]:
        """(status, JSON) for a plain answer; a list of SSE events for a stream."""
        self.requests.append(Recorded(method, path, headers, body))
        if headers.get("x-api-key") != self.api_key:
            return _error(401, "invalid x-api-key")
        if path == "/v1/models" and method == "GET":
            data = [{"type": "model", "id": m, "display_name": m,
                     "created_at": "2025-01-01T00:00:00Z"} for m in self.models]
            return 200, orjson.dumps({"data": data, "has_more": False,
                                      "first_id": self.models[0], "last_id": self.models[-1]})
        if path != "/v1/messages" or method != "POST":
            return _error(404, f"no route for {method} {path}")
        if not headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "messages: Field required")
        for key in ("model", "max_tokens"):
            if key not in body:
                return _error(400, f"{key}: Field required")
        if self.status is not None:
            default = "Overloaded" if self.status == 529 else "slow down"
            return _error(self.status, self.error_message or default)
        if self.raw_body is not None:
            return 200, self.raw_body
        if self.raw_events is not None and body.get("stream"):
            return list(self.raw_events)
        return self._message(body)

    def _message(self, body: dict[str, Any]) -> tuple[int, bytes] | list[bytes]:
        n = len(self.requests)
        words = _WORDS.findall(self.text)
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        blocks: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if words else []
        blocks += [{"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": args}
                   for i, (name, args) in enumerate(self.tool_calls)]
        stop = "tool_use" if self.tool_calls else "end_turn"
        output = len(words) + 5 * len(self.tool_calls)
        msg = {"id": f"msg_fake{n}", "type": "message", "role": "assistant",
               "model": self.model or body["model"], "content": blocks, "stop_reason": stop,
               "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": output}}
        if not body.get("stream"):
            return 200, orjson.dumps(msg)
        start = {**msg, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": prompt, "output_tokens": 1}}
        events = [_sse("message_start", {"message": start})]
        if self.stream_error:
            return [*events, _sse("error", {"error": {"type": "overloaded_error",
                                                      "message": "Overloaded"}})]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(_sse("content_block_start",
                                   {"index": index, "content_block": {"type": "text", "text": ""}}))
                if index == 0:
                    events.append(_sse("ping", {}))
                events += [_sse("content_block_delta", {
                    "index": index, "delta": {"type": "text_delta", "text": w}}) for w in words]
            else:
                events.append(_sse("content_block_start", {"index": index, "content_block": {
                    **block, "input": {}}}))
                raw = orjson.dumps(block["input"]).decode() if block["input"] else ""
                size = max(1, -(-len(raw) // self.json_chunks))
                events += [_sse("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": raw[i:i + size]}})
                    for i in range(0, len(raw), size)]
            events.append(_sse("content_block_stop", {"index": index}))
        events.append(_sse("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                             "usage": {"output_tokens": output}}))
        events.append(_sse("message_stop", {}))
        return events


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": name, **payload})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _error(status: int, message: str) -> tuple[int, bytes]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return status, orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeAnthropic

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # keep pytest output clean

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.owner.answer(self.command, self.path.partition("?")[0], headers, body)
        if isinstance(answer, tuple):
            status, payload = answer
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        # A close-delimited stream, written one event at a time as the real API does.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in answer:
            self.wfile.write(event)
            self.wfile.flush()

    do_GET = do_POST = _serve
