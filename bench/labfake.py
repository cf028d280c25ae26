"""Fake GPU boxes and a fake cloud for ``bench/scheduling.py``, on 127.0.0.1.

A ``Box`` answers OpenAI chat completions (streamed or not) the way a model server on a
GPU does, with its durations multiplied by ``scale``:

- it holds ``fit`` models at once (Ollama-like); a request for a cold model first loads
  it (``swap_s``), evicting the least recently used model no request is using, and
  waits while every loaded model is in use; each load after start is one swap;
- it runs ``parallel`` requests at once (more wait inside the box, as Ollama's
  ``OLLAMA_NUM_PARALLEL`` does), each at ``prefill_tps`` for the prompt (about four
  characters a token) and ``decode_tps`` for the answer (``max_tokens`` tokens);
- ``latency_s`` before anything (a cloud's network and queue);
- it counts the most requests it ever held at once (``max_active``, counted on arrival,
  so a router that sends more than the box's slots shows it), tokens, spend at
  ``price_in``/``price_out`` USD per 1k tokens, and which workload classes it served
  (a class tag the benchmark writes into each prompt);
- ``GET /api/ps`` lists its loaded models as Ollama does, ``GET /api/tags`` all of them,
  ``GET /health`` and ``GET /models`` answer for lai's health checks.

A small HTTP/1.1 server on asyncio streams (keep-alive, chunked streams); only what lai
sends is understood. Not a test fake: ``tests/fakes/upstream.py`` is that.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

CLASS_TAG = re.compile(rb"\[class=([a-z-]+)\]")


@dataclass
class BoxSpec:
    """What a box is like (durations in simulated seconds)."""

    name: str
    models: tuple[str, ...]
    """The upstream names it serves (``qwen2.5:7b``)."""
    loaded: tuple[str, ...] = ()
    """Loaded at start (not counted as swaps)."""
    fit: int = 1
    swap_s: float = 0.0
    prefill_tps: float = 1000.0
    decode_tps: float = 40.0
    parallel: int = 1
    latency_s: float = 0.0
    price_in: float = 0.0
    price_out: float = 0.0
    """USD per 1k tokens."""
    cloud: bool = False


@dataclass
class BoxStats:
    requests: int = 0
    active: int = 0
    max_active: int = 0
    swaps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: float = 0.0
    classes: Counter[str] = field(default_factory=Counter)
    swap_log: list[tuple[float, str, str | None]] = field(default_factory=list)
    """(simulated seconds since start, model loaded, model evicted or None)."""

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "max_active": self.max_active,
                "swaps": self.swaps, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "spend_usd": round(self.spend_usd, 6), "classes": dict(self.classes),
                "swap_log": self.swap_log}


class Box:
    """One fake model server; ``await start()``, ``url``, ``await stop()``."""

    def __init__(self, spec: BoxSpec, scale: float) -> None:
        self.spec = spec
        self.scale = scale
        self.stats = BoxStats()
        self._loaded: OrderedDict[str, None] = OrderedDict((m, None) for m in spec.loaded)
        self._loading: set[str] = set()
        self._in_use: Counter[str] = Counter()
        self._cond = asyncio.Condition()
        self._gpu = asyncio.Semaphore(spec.parallel)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Box:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def start_clock(self) -> None:
        """Time the swap log from now (the workload's start)."""
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ the GPU

    async def _sleep(self, simulated: float) -> None:
        if simulated > 0:
            await asyncio.sleep(simulated * self.scale)

    async def _use(self, model: str) -> None:
        """Have ``model`` loaded and marked in use (loading it, a swap, if cold)."""
        if self.spec.cloud:
            return
        evicted = None
        async with self._cond:
            while True:
                if model in self._loaded:
                    self._loaded.move_to_end(model)
                    self._in_use[model] += 1
                    return
                if model in self._loading:
                    await self._cond.wait()
                    continue
                if len(self._loaded) + len(self._loading) < self.spec.fit:
                    break
                idle = next((m for m in self._loaded if not self._in_use[m]), None)
                if idle is not None:
                    del self._loaded[idle]
                    evicted = idle
                    break
                await self._cond.wait()
            self._loading.add(model)
            self.stats.swaps += 1
            self.stats.swap_log.append(
                (round((time.monotonic() - self._t0) / self.scale, 1), model, evicted))
        try:
            await self._sleep(self.spec.swap_s)
        finally:
            async with self._cond:
                self._loading.discard(model)
                self._loaded[model] = None
                self._in_use[model] += 1
                self._cond.notify_all()

    async def _done_with(self, model: str) -> None:
        if self.spec.cloud:
            return
        async with self._cond:
            self._in_use[model] -= 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                path = path.split("?", 1)[0]
                if method == "POST" and path.endswith("/chat/completions"):
                    await self._chat(orjson.loads(body), body, writer)
                elif method == "GET":
                    await self._get(path, writer)
                else:
                    await _send_json(writer, 404, {"error": {"message": "not found"}})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _get(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/api/ps" and not self.spec.cloud:
            await _send_json(writer, 200, {"models": [_ollama_model(m) for m in self._loaded]})
        elif path == "/api/tags" and not self.spec.cloud:
            await _send_json(writer, 200, {"models": [_ollama_model(m) for m in
                                                      self.spec.models]})
        elif path in ("/health", "/"):
            await _send_json(writer, 200, {"status": "ok"})
        elif path.endswith("/models"):
            await _send_json(writer, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": self.spec.name}
                for m in self.spec.models]})
        else:
            await _send_json(writer, 404, {"error": {"message": "not found"}})

    async def _chat(self, body: dict[str, Any], raw: bytes,
                    writer: asyncio.StreamWriter) -> None:
        model = str(body.get("model"))
        if model not in self.spec.models:
            await _send_json(writer, 404, {"error": {"message": f"model {model} not found"}})
            return
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages") or []) // 4
        out = int(body.get("max_tokens") or 200)
        stream = bool(body.get("stream"))
        tag = CLASS_TAG.search(raw)
        st = self.stats
        st.requests += 1
        st.active += 1
        st.max_active = max(st.max_active, st.active)
        st.classes[tag.group(1).decode() if tag else "?"] += 1
        try:
            await self._sleep(self.spec.latency_s)
            await self._use(model)
            try:
                async with self._gpu:
                    await self._sleep(prompt / self.spec.prefill_tps)
                    if stream:
                        await self._stream(writer, model, prompt, out)
                    else:
                        await self._sleep(out / self.spec.decode_tps)
                        await _send_json(writer, 200, _completion(model, prompt, out))
            finally:
                await self._done_with(model)
            st.prompt_tokens += prompt
            st.completion_tokens += out
            st.spend_usd += prompt / 1000 * self.spec.price_in + out / 1000 * self.spec.price_out
        finally:
            st.active -= 1

    async def _stream(self, writer: asyncio.StreamWriter, model: str, prompt: int,
                      out: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        per_token = self.scale / self.spec.decode_tps  # real seconds
        sent = 0
        t0 = time.monotonic()
        first = True
        while sent < out:
            due = min(out, 1 + int((time.monotonic() - t0) / per_token))
            if due > sent:
                delta: dict[str, Any] = {"content": "tok " * (due - sent)}
                if first:
                    delta["role"] = "assistant"
                    first = False
                _chunk(writer, _event(model, delta, None))
                sent = due
                await writer.drain()
            if sent < out:
                await asyncio.sleep(max(0.02, per_token))
        _chunk(writer, _event(model, {}, "stop"))
        usage = {"prompt_tokens": prompt, "completion_tokens": out,
                 "total_tokens": prompt + out}
        _chunk(writer, b"data: " + orjson.dumps({
            "id": "chatcmpl-lab", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [], "usage": usage}) + b"\n\n")
        _chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _ollama_model(name: str) -> dict[str, Any]:
    """One entry of Ollama's /api/ps (and /api/tags), in its shape."""
    family = name.split(":", 1)[0].rstrip("0123456789.")
    size = name.rsplit(":", 1)[-1].upper() if ":" in name else "?"
    return {"name": name, "model": name, "size": 5_000_000_000, "digest": "0" * 64,
            "details": {"parent_model": "", "format": "gguf", "family": family,
                        "families": [family], "parameter_size": size,
                        "quantization_level": "Q4_K_M"},
            "expires_at": "2099-01-01T00:00:00Z", "size_vram": 5_000_000_000}


def _event(model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    return b"data: " + orjson.dumps({
        "id": "chatcmpl-lab", "object": "chat.completion.chunk", "created": 0,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }) + b"\n\n"


def _completion(model: str, prompt: int, out: int) -> dict[str, Any]:
    return {"id": "chatcmpl-lab", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * out},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out,
                      "total_tokens": prompt + out}}


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _send_json(writer: asyncio.StreamWriter, status: int, doc: Any) -> None:
    body = orjson.dumps(doc)
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
