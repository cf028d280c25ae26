"""The RequestContext of an HTTP request: conversation labels and the caller's key."""

from __future__ import annotations

import re
import secrets
from typing import Any

from quart import g, request

from lai.engine.types import RequestContext
from lai.errors import InvalidRequest

CONVERSATION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LABEL_MAX = 200


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(12)


def _label(name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if len(value) > _LABEL_MAX:
        raise InvalidRequest(f"Header {name} is longer than {_LABEL_MAX} characters.",
                             param=name)
    return value or None


def conversation_id() -> str:
    """The X-Conversation-ID header (validated), or a new id. Raises InvalidRequest."""
    given = request.headers.get("X-Conversation-ID")
    if given is None or not given.strip():
        return new_conversation_id()
    given = given.strip()
    if not CONVERSATION_ID.fullmatch(given) or not given.strip("."):
        raise InvalidRequest(
            "X-Conversation-ID must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-' "
            "(not only dots).",
            param="X-Conversation-ID",
        )
    return given


def build_context(*, source_default: str | None = None) -> RequestContext:
    """The engine context for the current request.

    The caller's key (set on ``g.lai_key`` by the auth hook, when auth is on) gives the
    queue priority, the key name and prefix, and the models it may use.
    """
    key: Any = getattr(g, "lai_key", None)
    return RequestContext(
        priority=key.priority if key is not None else 1,
        key_name=key.name if key is not None else None,
        key_prefix=key.prefix if key is not None else None,
        allowed_models=(frozenset(key.models) if key is not None and key.models else None),
        conversation_id=conversation_id(),
        username=_label("X-Username"),
        source=_label("X-Source") or source_default,
        display_name=_label("X-Display-Name"),
    )
