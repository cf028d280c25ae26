"""A scriptable OpenAI-compatible model server for tests and benchmarks.

`FakeUpstream` is a real HTTP/1.1 server on 127.0.0.1, built on a bare
`asyncio.Protocol` and run on its own event loop in a background thread, so it serves
the same whether the code under test runs in the test's event loop, another thread or a
subprocess. It speaks just enough HTTP for OpenAI clients: keep-alive, Content-Length
request bodies, Content-Length responses, and chunked `text/event-stream` responses in
which every SSE event is its own chunk, written the moment it is due.

Endpoints: `POST /v1/chat/completions` and `POST /chat/completions` (a cloud base URL
already ends in `/v1`), `POST /v1/embeddings` and `POST /embeddings` (`embedding()` gives
the vector it answers for a text), `GET /health`, `GET /v1/models` and `GET /models`, and
any other `GET` path given a fixed answer with `serve()` (a model server's own endpoints,
such as Ollama's `/api/ps`; see `tests/fakes/boxes.py`).

What a chat request gets is a `Behaviour`: the one-shot behaviours queued with
`script()` are used first, in order, then `default`. Every request is recorded
(`requests`) and counted (`chat_count`, `in_flight`, `max_in_flight`, `health_count`,
`disconnects`, `bytes_sent`). Answers larger than 64 KiB are written in pieces of about
64 KiB, each only once the socket has room, so a reader that stops reading stops the
fake too (as a real server blocks in `send`).

Run standalone with `python -m tests.fakes.upstream --port 9000 --chunks 20 --delay 0.01`.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import hashlib
import itertools
import re
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import orjson

Mode = Literal["ok", "status", "hang", "cut", "truncate", "reset"]
_MODES = frozenset(("ok", "status", "hang", "cut", "truncate", "reset"))
_CHAT_PATHS = frozenset(("/v1/chat/completions", "/chat/completions"))
_MODEL_PATHS = frozenset(("/v1/models", "/models"))
_EMBEDDING_PATHS = frozenset(("/v1/embeddings", "/embeddings"))
_MAX_HEAD = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON = b"application/json"
_DONE = b"data: [DONE]\n\n"
_LAST_CHUNK = b"0\r\n\r\n"
_WORDS = re.compile(r"\s*\S+(?:\s+$)?")


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one chat request (and, for `default`, the health check).

    `mode`: "ok" a normal answer; "status" the `status` code with an OpenAI error body
    (and a `Retry-After: retry_after` header if set); "hang" never answer until the
    client leaves or the server stops; "cut" a stream sends `cut_after` deltas then
    closes the connection without the last chunk or [DONE], a plain answer sends its
    headers then closes; "truncate" a 200 that is empty, as llama.cpp answers a stream
    it dropped (a bare `data: [DONE]`, or `choices: []`); "reset" drop the connection
    with a TCP reset before any byte.

    `content` is the answer: a string is streamed one whitespace-led word per delta, a
    sequence of strings one item per delta; by default it is "tok0 tok1 ..." with
    `chunks` words. `tool_calls` ({"id"?, "function": {"name", "arguments"}} dicts, or
    flat {"name", "arguments"}) replaces the content; each call's arguments are streamed
    in `chunks` pieces. `finish_reason` defaults to "tool_calls" with tool calls, else
    "stop"; "" sends none (a stream then lacks its finish chunk, a plain answer has
    null). `delay` is waited before every delta and before a plain answer;
    `first_delay` is waited before the first byte. `prefill_delay` is waited after the
    `200` headers: in a stream before its first event (a model server's prefill), in a
    plain answer after the first half of its body. `stall_after` deltas into a stream,
    the fake stalls for `stall_for` seconds (by default until the client leaves). A
    client that leaves during any wait is counted in `disconnects`. `usage` adds a usage
    object to plain answers, and to streams whose request set
    `stream_options.include_usage`.
    `health_status` and `health_delay` are read from `FakeUpstream.default` only.
    `reasoning` (a sequence of strings) is sent first as `reasoning_content`, one item
    per delta, as llama.cpp and vLLM send a thinking model's reasoning (a plain answer
    carries it joined in `message.reasoning_content`).

    For answers no well-behaved server gives (upstream-fault tests): `model` is the
    model name the answer carries (default: the request's); `raw_body` answers any
    chat request with exactly these bytes as a Content-Length response of
    `content_type` (status 200, or `status` in mode "status") and `raw_headers` (e.g.
    `{"content-encoding": "gzip"}` on a body that is not gzip); `raw_events` answers any
    chat request with a chunked `text/event-stream` of exactly these events, each
    written as its own chunk after `delay` (a dict is sent as `data: <its JSON>`, bytes
    or a str as given, so `b"data: not json\n\n"` or a truncated line can be sent),
    with no `[DONE]` unless listed.
    """

    mode: Mode = "ok"
    status: int = 500
    retry_after: float | str | None = None
    error_message: str = "fake upstream error"
    chunks: int = 3
    cut_after: int = 1
    delay: float = 0.0
    first_delay: float = 0.0
    prefill_delay: float = 0.0
    stall_after: int | None = None
    stall_for: float = 3600.0
    content: str | Sequence[str] | None = None
    usage: bool = True
    tool_calls: Sequence[dict[str, Any]] | None = None
    finish_reason: str | None = None
    reasoning: Sequence[str] | None = None
    health_status: int = 200
    health_delay: float = 0.0
    model: str | None = None
    raw_body: bytes | str | None = None
    content_type: str = "application/json"
    raw_headers: dict[str, str] | None = None
    raw_events: Sequence[bytes | str | dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"unknown Behaviour mode {self.mode!r}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; `headers` has lower-case names."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body; None if there was none or it was not JSON."""
    at: float
    """`time.monotonic()` when the request was complete."""


class _Act(enum.Enum):
    """Plan steps other than bytes to write (bytes) or seconds to wait (float)."""

    HANG = "hang"
    CLOSE = "close"
    RESET = "reset"


_Plan = list[bytes | float | _Act]


class _BadRequest(Exception):
    pass


class FakeUpstream:
    """An OpenAI-compatible model server on 127.0.0.1, scriptable from any thread.

    `models` is what `/v1/models` lists; unless `accept_any_model` is False (then an
    unlisted model gets a 404 `model_not_found`), any model name is answered. With
    `record=False` the `requests` list stays empty (for long benchmarks). `send_buffer`
    sets SO_SNDBUF of every connection, so that how much the fake has written
    (`bytes_sent`) says how much its client read, not how much the kernel took.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        models: Sequence[str] = ("fake-model",),
        accept_any_model: bool = True,
        record: bool = True,
        send_buffer: int | None = None,
    ) -> None:
        self.host = host
        self.send_buffer = send_buffer
        self.models = list(models)
        self.accept_any_model = accept_any_model
        self.record = record
        self.default = Behaviour()
        self.responder: Callable[[Any], Behaviour | None] | None = None
        """Called with each chat request's parsed body when no scripted behaviour is
        queued; the Behaviour it returns answers (None: `default`). Runs on the fake's
        loop thread, so it must not block (see tests/fakes/agent.py)."""
        self._lock = threading.Lock()
        self._life = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._port: int | None = None
        self._in_flight = 0
        self._pages: dict[str, tuple[int, bytes, bytes]] = {}
        self._reset_counters()

    # lifecycle ------------------------------------------------------------------------

    def start(self, port: int | None = None) -> FakeUpstream:
        """Listen on `port` and return once connections are accepted.

        With no `port`, the port of the previous `start()` is bound again (so `refuse()`
        then `start()` brings the same server back), else a free one. Between
        `refuse()`/`stop()` and `start()` another process may take the port (the OS can
        hand it out as an ephemeral port); that race is tiny but real, and then
        `start()` raises OSError. Raises RuntimeError if already listening.
        """
        with self._life:
            if self._listener is not None:
                raise RuntimeError("FakeUpstream is already listening")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run_loop,
                    args=(self._loop, ready),
                    name="fake-upstream",
                    daemon=True,
                )
                self._thread.start()
                ready.wait()
            bind = port if port is not None else (self._port or 0)
            self._listener = self._call(self._listen(bind))
            self._port = self._listener.sockets[0].getsockname()[1]
        return self

    def refuse(self) -> None:
        """Close the listening socket and every open connection; the port is kept.

        New connections then fail with ECONNREFUSED until `start()`; requests in
        progress see their connection drop (not counted in `disconnects`).
        """
        with self._life:
            self._close_listener()

    def stop(self) -> None:
        """`refuse()`, then end the server thread. Safe to call twice; `start()` revives."""
        with self._life:
            if self._loop is None:
                return
            self._close_listener()
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        if self._listener is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port; raises RuntimeError before the first `start()`."""
        if self._port is None:
            raise RuntimeError("FakeUpstream was never started")
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash or `/v1`."""
        return f"http://{self.host}:{self.port}"

    # scripting and statistics -----------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue one-shot behaviours, used in order by the next chat requests."""
        with self._lock:
            self._script.extend(behaviours)

    def serve(self, path: str, body: bytes | str, *, status: int = 200,
              content_type: str = "application/json") -> None:
        """Answer every `GET path` with `body` from now on (replacing an earlier one)."""
        payload = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._pages[path] = (status, payload, content_type.encode())

    def hits(self, path: str, *, while_busy: bool = False) -> int:
        """`GET path` requests answered by `serve()`; with `while_busy`, only those that
        arrived while a chat request was being answered."""
        with self._lock:
            return (self._busy_hits if while_busy else self._hits).get(path, 0)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received since the last `reset_stats()`."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_count(self) -> int:
        """Requests to a chat completions path."""
        return self._chat_count

    @property
    def embedding_count(self) -> int:
        """Requests to an embeddings path."""
        return self._embedding_count

    @property
    def in_flight(self) -> int:
        """Chat requests being answered right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most chat requests ever answered at once."""
        return self._max_in_flight

    @property
    def health_count(self) -> int:
        """Requests to `/health`."""
        return self._health_count

    @property
    def disconnects(self) -> int:
        """Chat requests whose client left before the answer was complete."""
        return self._disconnects

    @property
    def bytes_sent(self) -> int:
        """Bytes of chat answers handed to the sockets (written, not necessarily read)."""
        return self._bytes_sent

    def reset_stats(self) -> None:
        """Forget recorded requests and counters (not the script queue)."""
        with self._lock:
            self._reset_counters()

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
    ) -> None:
        """Poll `predicate` in this thread until true; raises TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    async def wait_for_async(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the same signature as wait_for
        interval: float = 0.005,
    ) -> None:
        """`wait_for` for async tests: polls without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(interval)

    # internals: server thread -----------------------------------------------------------

    def _reset_counters(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._chat_count = 0
        self._embedding_count = 0
        self._max_in_flight = self._in_flight
        self._health_count = 0
        self._hits: dict[str, int] = {}
        self._busy_hits: dict[str, int] = {}
        self._disconnects = 0
        self._bytes_sent = 0

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Connection(self), self.host, port, reuse_address=True, backlog=1024
        )

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._call(self._close_all(self._listener))
            self._listener = None

    async def _close_all(self, listener: asyncio.Server) -> None:
        listener.close()
        for conn in list(self._conns):
            conn.abort()
        await asyncio.sleep(0)  # let the aborted transports report connection_lost

    def _chat_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _chat_finished(self, client_gone: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            self._disconnects += client_gone

    def _handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[_Plan, bool]:
        """Record one request and plan its answer; the flag says it is a chat request."""
        path = target.partition("?")[0]
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        behaviour = self.default
        with self._lock:
            if self.record:
                record = RecordedRequest(method, path, headers, body, time.monotonic())
                self._requests.append(record)
            if path in _CHAT_PATHS and method == "POST":
                self._chat_count += 1
                if self._script:
                    behaviour = self._script.popleft()
                elif self.responder is not None:
                    behaviour = self.responder(body) or self.default
            elif path in _EMBEDDING_PATHS and method == "POST":
                self._embedding_count += 1
                behaviour = self._script.popleft() if self._script else self.default
            elif path == "/health":
                self._health_count += 1
            page = self._pages.get(path) if method == "GET" else None
            if page is not None:
                self._hits[path] = self._hits.get(path, 0) + 1
                if self._in_flight:
                    self._busy_hits[path] = self._busy_hits.get(path, 0) + 1
        if page is not None:
            status, payload, content_type = page
            return [_head(status, content_type, len(payload)) + payload], False
        if path in _CHAT_PATHS:
            if method != "POST":
                return [_error(405, "use POST")], False
            return self._chat(body, behaviour), True
        if path in _EMBEDDING_PATHS and method == "POST":
            return self._embeddings(body, behaviour), True
        if method != "GET":
            status = 405 if path == "/health" or path in _MODEL_PATHS else 404
            return [_error(status, f"no route for {method} {path}")], False
        if path == "/health":
            default = self.default
            plan: _Plan = [default.health_delay] if default.health_delay > 0 else []
            if default.health_status < 400:
                plan.append(_response(default.health_status, b'{"status":"ok"}'))
            else:
                plan.append(_error(default.health_status, "unhealthy"))
            return plan, False
        if path in _MODEL_PATHS:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
            ]
            return [_response(200, orjson.dumps({"object": "list", "data": data}))], False
        return [_error(404, f"no route for {method} {path}")], False

    def _embeddings(self, body: Any, b: Behaviour) -> _Plan:
        """An OpenAI embeddings answer: `embedding(text)` for each input; the behaviour's
        modes "status", "hang", "reset" and its delays apply as to chat."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return [_error(400, "the body must be a JSON object with a model")]
        if b.mode == "reset":
            return [_Act.RESET]
        if b.mode == "hang":
            return [_Act.HANG]
        plan = _Builder()
        plan.wait(b.first_delay + b.delay)
        if b.mode == "status":
            plan.add(_error(b.status, b.error_message, retry_after=b.retry_after))
            return plan.steps
        raw = body.get("input")
        texts = raw if isinstance(raw, list) else [raw]
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 4
        data = [{"object": "embedding", "index": i, "embedding": embedding(str(t), dims)}
                for i, t in enumerate(texts)]
        words = sum(len(str(t).split()) for t in texts)
        answer = {"object": "list", "data": data, "model": body["model"],
                  "usage": {"prompt_tokens": words, "total_tokens": words}}
        plan.add(_response(200, orjson.dumps(answer)))
        return plan.steps

    def _chat(self, body: Any, b: Behaviour) -> _Plan:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return [_error(400, "the body must be a JSON object with a messages list")]
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return [_error(400, "you must provide a model parameter")]
        if not self.accept_any_model and model not in self.models:
            return [_error(404, f"The model `{model}` does not exist", code="model_not_found")]
        if b.mode == "reset":
            return [_Act.RESET]
        if b.mode == "hang":
            return [_Act.HANG]
        plan = _Builder()
        lead = b.first_delay + b.delay
        if b.raw_body is not None:
            payload = b.raw_body.encode() if isinstance(b.raw_body, str) else b.raw_body
            status = b.status if b.mode == "status" else 200
            plan.wait(lead)
            extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                             for k, v in (b.raw_headers or {}).items())
            plan.add(_head(status, b.content_type.encode(), len(payload), extra) + payload)
            return plan.steps
        if b.raw_events is not None:
            _plan_raw_stream(plan, b)
            return plan.steps
        if b.mode == "status":
            plan.wait(lead)
            plan.add(_error(b.status, b.error_message, retry_after=b.retry_after))
            return plan.steps
        model = b.model or model
        stream = body.get("stream") is True
        rid = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        prompt_tokens = _prompt_tokens(body["messages"])
        tool_calls = _normalise_tool_calls(b.tool_calls) if b.tool_calls else None
        finish = b.finish_reason
        if finish is None:
            finish = "tool_calls" if tool_calls else "stop"
        if stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            _plan_stream(
                plan, b, rid, created, model, prompt_tokens, tool_calls, finish, include_usage
            )
            return plan.steps
        plan.wait(lead)
        if b.mode == "truncate":
            answer: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [],
            }
            if b.usage:
                answer["usage"] = _usage(prompt_tokens, 0)
        else:
            message: dict[str, Any] = {"role": "assistant"}
            if tool_calls:
                message["content"] = None
                message["tool_calls"] = tool_calls
                produced = sum(
                    len(_split(c["function"]["arguments"], b.chunks)) for c in tool_calls
                )
            else:
                pieces = _pieces(b)
                message["content"] = "".join(pieces)
                produced = len(pieces)
            if b.reasoning:
                message["reasoning_content"] = "".join(b.reasoning)
            answer = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish or None}],
            }
            if b.usage:
                answer["usage"] = _usage(prompt_tokens, produced)
        payload = orjson.dumps(answer)
        if b.mode == "cut":
            plan.add(_head(200, _JSON, len(payload)))
            plan.act(_Act.CLOSE)
        elif b.prefill_delay > 0:
            half = len(payload) // 2
            plan.add(_head(200, _JSON, len(payload)) + payload[:half])
            plan.wait(b.prefill_delay)
            plan.add(payload[half:])
        else:
            plan.add(_response(200, payload))
        return plan.steps


_PIECE = 64 * 1024
"""Adjacent writes are joined up to this size; each piece waits for room in the socket."""


class _Builder:
    """Collects plan steps, joining adjacent writes so a burst costs one syscall."""

    def __init__(self) -> None:
        self._steps: _Plan = []
        self._pending: list[bytes] = []
        self._size = 0

    @property
    def steps(self) -> _Plan:
        self._flush()
        return self._steps

    def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _PIECE:
            self._flush()

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._flush()
            self._steps.append(float(seconds))

    def act(self, action: _Act) -> None:
        self._flush()
        self._steps.append(action)

    def _flush(self) -> None:
        if self._pending:
            self._steps.append(b"".join(self._pending))
            self._pending.clear()
            self._size = 0


def _plan_raw_stream(plan: _Builder, b: Behaviour) -> None:
    plan.wait(b.first_delay)
    plan.add(_STREAM_HEAD)
    for event in b.raw_events or ():
        if isinstance(event, dict):
            data = b"data: " + orjson.dumps(event) + b"\n\n"
        else:
            data = event.encode() if isinstance(event, str) else event
        plan.wait(b.delay)
        plan.add(_chunk(data))
    plan.add(_LAST_CHUNK)


def _plan_stream(
    plan: _Builder,
    b: Behaviour,
    rid: str,
    created: int,
    model: str,
    prompt_tokens: int,
    tool_calls: list[dict[str, Any]] | None,
    finish: str,
    include_usage: bool,
) -> None:
    head = (
        b'{"id":"'
        + rid.encode()
        + b'","object":"chat.completion.chunk","created":'
        + str(created).encode()
        + b',"model":'
        + orjson.dumps(model)
        + b',"choices":[{"index":0,"delta":'
    )

    def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _chunk(
            b"data: "
            + head
            + orjson.dumps(delta)
            + b',"finish_reason":'
            + orjson.dumps(finish_reason)
            + b"}]}\n\n"
        )

    plan.wait(b.first_delay)
    plan.add(_STREAM_HEAD)
    plan.wait(b.prefill_delay)
    if b.mode == "truncate":
        plan.wait(b.delay)
        plan.add(_chunk(_DONE) + _LAST_CHUNK)
        return
    deltas: list[dict[str, Any]] = []
    if tool_calls:
        for i, call in enumerate(tool_calls):
            fn = call["function"]
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": fn["name"], "arguments": ""},
                        }
                    ]
                }
            )
            deltas.extend(
                {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                for piece in _split(fn["arguments"], b.chunks)
            )
        produced = len(deltas) - len(tool_calls)
    else:
        deltas = [{"content": piece} for piece in _pieces(b)]
        produced = len(deltas)
    if b.reasoning:
        deltas[:0] = [{"reasoning_content": piece} for piece in b.reasoning]
    plan.add(event({"role": "assistant", "content": ""}))
    for n, delta in enumerate(deltas):
        if b.mode == "cut" and n >= b.cut_after:
            break
        if n == b.stall_after:
            plan.wait(b.stall_for)
        plan.wait(b.delay)
        plan.add(event(delta))
    if b.mode == "cut":
        plan.act(_Act.CLOSE)
        return
    if finish:
        plan.add(event({}, finish))
    if include_usage and b.usage:
        usage = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(prompt_tokens, produced),
        }
        plan.add(_chunk(b"data: " + orjson.dumps(usage) + b"\n\n"))
    plan.add(_chunk(_DONE) + _LAST_CHUNK)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests in order and carries out their plans."""

    def __init__(self, fake: FakeUpstream) -> None:
        self._fake = fake
        self._buf = bytearray()
        self._head: _Head | None = None
        self._busy = False
        self._server_closed = False
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._resume: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if self._fake.send_buffer is not None and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._fake.send_buffer)
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fake._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fake._conns.discard(self)
        for fut in (self._closed, self._resume):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        self._resume = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._process()

    def abort(self) -> None:
        """Drop the connection on the server's behalf (refuse/stop)."""
        self._server_closed = True
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    def _process(self) -> None:
        transport = self._transport
        while not self._busy and transport is not None and not transport.is_closing():
            try:
                request = self._parse()
            except _BadRequest as exc:
                plan: _Plan = [_error(400, str(exc)), _Act.CLOSE]
                is_chat = False
            else:
                if request is None:
                    return
                head, raw = request
                plan, is_chat = self._fake._handle(head.method, head.target, head.headers, raw)
                if not head.keep_alive:
                    plan.append(_Act.CLOSE)
            waits = any(type(step) is float or step is _Act.HANG for step in plan)
            if waits or sum(len(s) for s in plan if type(s) is bytes) > _PIECE:
                self._busy = True
                self._task = asyncio.get_running_loop().create_task(self._run(plan, is_chat))
                return
            if is_chat:
                self._fake._chat_started()
            gone = transport.is_closing()
            if not gone:
                for step in plan:
                    if type(step) is bytes:
                        transport.write(step)
                        if is_chat:
                            self._fake._bytes_sent += len(step)
                    else:
                        self._act(step)  # type: ignore[arg-type]
            if is_chat:
                self._fake._chat_finished(gone)

    async def _run(self, plan: _Plan, is_chat: bool) -> None:
        transport = self._transport
        assert transport is not None
        if is_chat:
            self._fake._chat_started()
        gone = False
        try:
            for step in plan:
                if type(step) is float:
                    await asyncio.wait((self._closed,), timeout=step)
                    gone = self._closed.done()
                elif type(step) is bytes:
                    gone = transport.is_closing()
                    if not gone:
                        transport.write(step)
                        if is_chat:
                            self._fake._bytes_sent += len(step)
                        if self._resume is not None:
                            await asyncio.wait(
                                (self._resume, self._closed), return_when=asyncio.FIRST_COMPLETED
                            )
                elif step is _Act.HANG:
                    await asyncio.wait((self._closed,))
                    gone = True
                else:
                    self._act(step)  # type: ignore[arg-type]
                if gone:
                    break
        finally:
            if is_chat:
                self._fake._chat_finished(gone and not self._server_closed)
            self._busy = False
            self._task = None
        self._process()

    def _act(self, action: _Act) -> None:
        transport = self._transport
        assert transport is not None
        if action is _Act.RESET:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        elif action is _Act.CLOSE:
            transport.close()

    def _parse(self) -> _Request | None:
        """The next complete request in the buffer, or None until more bytes arrive."""
        buf = self._buf
        if self._head is None:  # kept so a large body is not rescanned per packet
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise _BadRequest("request head too large")
                return None
            self._head = _parse_head(buf[:end].decode("latin-1"), end + 4)
        head = self._head
        total = head.body_start + head.length
        if len(buf) < total:
            return None
        self._head = None
        raw = bytes(buf[head.body_start : total])
        del buf[:total]
        return head, raw


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    target: str
    headers: dict[str, str]
    keep_alive: bool
    body_start: int
    length: int


_Request = tuple[_Head, bytes]


def _parse_head(text: str, body_start: int) -> _Head:
    lines = text.split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest("malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("malformed header line")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest("chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest("malformed Content-Length") from None
    if length < 0:
        raise _BadRequest("malformed Content-Length")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    return _Head(method, target, headers, keep_alive, body_start, length)


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _head(status: int, content_type: bytes, length: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n" % (
        status,
        _REASONS.get(status, b"Unknown"),
        content_type,
        length,
        extra,
    )


def _response(status: int, payload: bytes) -> bytes:
    return _head(status, _JSON, len(payload)) + payload


def _error(
    status: int, message: str, *, code: str | None = None, retry_after: float | str | None = None
) -> bytes:
    """An OpenAI-shaped error response."""
    if status == 429:
        kind, code = "rate_limit_error", code or "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    payload = orjson.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    )
    extra = b"" if retry_after is None else b"retry-after: %s\r\n" % str(retry_after).encode()
    return _head(status, _JSON, len(payload), extra) + payload


def embedding(text: str, dimensions: int = 4) -> list[float]:
    """The vector the fake answers for `text`: the same text always gets the same one."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(dimensions)]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _prompt_tokens(messages: list[Any]) -> int:
    """Whitespace-separated words in every string content and text part of the messages."""
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    count += len(part["text"].split())
    return count


def _pieces(b: Behaviour) -> list[str]:
    if b.content is None:
        return [f"tok{i}" if i == 0 else f" tok{i}" for i in range(b.chunks)]
    if isinstance(b.content, str):
        return _WORDS.findall(b.content) or ([b.content] if b.content else [])
    return list(b.content)


def _split(text: str, parts: int) -> list[str]:
    """`text` in at most `parts` non-empty consecutive pieces."""
    if not text:
        return []
    size = -(-len(text) // max(parts, 1))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _normalise_tool_calls(calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function", call)
        arguments = fn.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        out.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {"name": fn["name"], "arguments": arguments},
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, printing the URL first (for scripts to read)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", default="ok", choices=sorted(_MODES))
    parser.add_argument("--status", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--first-delay", type=float, default=0.0)
    parser.add_argument("--content", default=None)
    parser.add_argument("--stream-bytes", type=int, default=0,
                        help="answer with about this many bytes of content, 1 KiB a delta")
    parser.add_argument("--models", default="fake-model", help="comma-separated")
    args = parser.parse_args(argv)
    # Nothing can read the request log of a standalone server, so none is kept.
    fake = FakeUpstream(models=args.models.split(","), record=False)
    fake.default = Behaviour(
        mode=args.mode,
        status=args.status,
        chunks=args.chunks,
        delay=args.delay,
        first_delay=args.first_delay,
        content=["x" * 1024] * (args.stream_bytes // 1024) if args.stream_bytes else args.content,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start(args.port)
    print(f"fake upstream listening on {fake.url}", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
