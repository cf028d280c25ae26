"""lai's errors in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.

The HTTP status stays lai's (docs/api.md), so the anthropic SDK raises the class a user
expects (``RateLimitError``, ``NotFoundError``, ...) and retries what is retryable; the
``type`` follows Anthropic's list for that status.
"""

from __future__ import annotations

from typing import Any

import orjson

from lai.errors import ContextLengthExceeded, LaiError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_CODES = {"upstream_timeout": "timeout_error", "upstream_error": "api_error",
          "provider_capacity_exceeded": "overloaded_error",
          "no_healthy_provider": "overloaded_error"}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    if status in _TYPES:
        return _TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_doc(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def message_of(err: LaiError) -> str:
    if isinstance(err, ContextLengthExceeded):
        # Claude Code compacts the conversation when it reads these words.
        return f"prompt is too long: {err.message}"
    return err.message


def error_body(err: LaiError) -> bytes:
    """The JSON body for ``err`` (sent with ``err.status`` and ``err.headers()``)."""
    return orjson.dumps(error_doc(error_type(err.status), message_of(err)))


def http_error_body(status: int, message: str) -> bytes:
    """The body of an HTTP-level refusal (405, 408, 413, 500) on a Messages path."""
    return orjson.dumps(error_doc(error_type(status), message))


def stream_error_type(openai_error: Any) -> str:
    """Anthropic's type for the OpenAI-shaped error body that ends a broken stream."""
    if not isinstance(openai_error, dict):
        return "api_error"
    code, kind = openai_error.get("code"), openai_error.get("type")
    if isinstance(code, str) and code in _CODES:
        return _CODES[code]
    if isinstance(kind, str) and kind in _TYPES.values():
        return kind  # an Anthropic upstream's own type, relayed by its adapter
    return "api_error"
