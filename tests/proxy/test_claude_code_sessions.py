"""What a Claude Code session leaves in lai's records: the access log names the provider
that answered. Requests shaped as Claude Code 2.1.197 sends them
(tests/proxy/claude_code_shapes.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.harness import model, provider
from tests.proxy.claude_code_shapes import HEADERS, USER_TURN


@pytest.fixture
async def local(proxy_factory: Any, upstream: FakeUpstream) -> Any:
    proxy = await proxy_factory([provider("box", upstream.url)],
                                [model("coder", "box", max_tokens=16384,
                                       aliases=["claude-*"])])
    return proxy, upstream


@pytest.mark.parametrize("stream", [False, True])
async def test_the_access_log_names_the_provider_that_answered(
    local: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="lai.access")
    proxy, _ = local
    r = await proxy.http.post("/v1/messages?beta=true", headers=HEADERS, json={
        "model": "claude-opus-4-8", "max_tokens": 50, "stream": stream,
        "messages": [USER_TURN]})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    for _ in range(200):
        lines = [rec.getMessage() for rec in caplog.records
                 if rec.name == "lai.access" and rid in rec.getMessage()]
        if lines:
            break
        await asyncio.sleep(0.01)
    [line] = lines
    assert line.startswith("POST /v1/messages 200 ") and "provider=box " in line
