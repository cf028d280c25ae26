"""Builders for store tests: finished-request events and database URLs."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any

from lai.engine.events import RequestFinished
from lai.engine.types import RequestContext, Usage

PG_URL = os.environ.get(
    "LAI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_ids = itertools.count()


def finished(
    *,
    conversation_id: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    answer: str | None = "Hello!",
    status: str = "success",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    request_id: str | None = None,
    started_at: float | None = None,
    key_name: str | None = "test-key",
    tool_calls: list[dict[str, Any]] | None = None,
    **context: Any,
) -> RequestFinished:
    """A RequestFinished as the engine would emit it."""
    ok = status == "success"
    response: dict[str, Any] | None = None
    if ok and (answer is not None or tool_calls):
        response = {"role": "assistant", "content": answer}
        if tool_calls:
            response["tool_calls"] = tool_calls
    return RequestFinished(
        context=RequestContext(
            request_id=request_id or f"req_{next(_ids):06d}_{secrets.token_hex(4)}",
            key_name=key_name,
            key_prefix="lai_5f4d" if key_name else None,
            conversation_id=conversation_id,
            **context,
        ),
        model_requested="auto",
        model_id="qwen" if ok else None,
        provider_id="gpu" if ok else None,
        failover_from=("other",) if ok else (),
        streaming=False,
        status="success" if ok else "error",
        http_status=200 if ok else 502,
        error_code=None if ok else "upstream_error",
        error_message=None if ok else "upstream failed",
        usage=Usage(prompt_tokens, completion_tokens, False) if ok else Usage(),
        cost_usd=0.001 if ok else 0.0,
        started_at=started_at if started_at is not None else time.time(),
        queue_ms=1.0,
        ttft_ms=20.0 if ok else None,
        duration_ms=100.0,
        upstream_ms=90.0,
        request_messages=tuple(messages or [{"role": "user", "content": "Hi"}]),
        response_message=response,
        finish_reason="stop" if ok else None,
    )
