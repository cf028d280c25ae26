"""A fast fake OpenAI-compatible model server on uvicorn + uvloop + httptools.

The upstream of ``bench/outside.py`` (issue 16): a bare ASGI app, so the figures
measured "direct" are those of a fast server, not of the bench's own fake. It answers
``POST /v1/chat/completions`` (and ``/chat/completions``) with a fixed small completion,
or with ``"stream": true`` a few SSE deltas written back to back, then ``data: [DONE]``;
``GET /health`` and ``GET /v1/models`` for lai's health check. Any model name is served.

    python bench/fastfake.py --port 9101        # prints "fastfake listening on URL"
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

import orjson
import uvicorn

_CHUNKS = 8


def _completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-fast", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello! How can I help?"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    })


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
        raw = await _read_body(receive)
        try:
            req = orjson.loads(raw)
        except orjson.JSONDecodeError:
            req = {}
        model = str(req.get("model") or "fake-model") if isinstance(req, dict) else "fake"
        if isinstance(req, dict) and req.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"),
                                    (b"cache-control", b"no-cache")]})
            await send({"type": "http.response.body", "more_body": True,
                        "body": _chunk(model, {"role": "assistant", "content": ""})})
            for i in range(_CHUNKS):
                await send({"type": "http.response.body", "more_body": True,
                            "body": _chunk(model, {"content": f" tok{i}"})})
            await send({"type": "http.response.body", "more_body": True,
                        "body": _chunk(model, {}, "stop", {"prompt_tokens": 9,
                                                            "completion_tokens": _CHUNKS,
                                                            "total_tokens": 9 + _CHUNKS})})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        body = _completion(model)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if method == "GET" and path in ("/health", "/v1/models", "/models"):
        body = (b'{"status":"ok"}' if path == "/health" else
                b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}')
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"fastfake listening on http://127.0.0.1:{port}", flush=True)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
