"""The RequestContext of an HTTP request: conversation labels and the caller's key.

``context_for(headers, key)`` works from any headers mapping (the chat endpoint reads
ASGI headers itself); ``build_context()`` is the same for Quart's current request.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from quart import g, request

from lai.engine.quota import KeyQuota
from lai.engine.types import RequestContext, new_request_id, time_ordered_hex
from lai.errors import InvalidRequest
from lai.proxy.access import request_info
from lai.store.keyvalues import LOCAL_ONLY

CONVERSATION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LABEL_MAX = 200


def new_conversation_id() -> str:
    return "conv_" + time_ordered_hex()  # appended, not scattered, in the store's indexes


class Headers(Protocol):
    """Case-insensitive header lookup, as Quart's ``request.headers`` offers."""

    def get(self, key: str) -> str | None: ...


def _label(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if len(value) > _LABEL_MAX:
        raise InvalidRequest(f"Header {name} is longer than {_LABEL_MAX} characters.",
                             param=name)
    return value or None


def conversation_id(headers: Headers) -> str:
    """The X-Conversation-ID header (validated), or a new id. Raises InvalidRequest."""
    given = headers.get("X-Conversation-ID")
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
    """The engine context for Quart's current request; the caller's key is the one the
    auth hook set on ``g.lai_key`` (when auth is on), the request id the one sent back
    as ``x-request-id`` (``lai.proxy.access``). Raises InvalidRequest."""
    return context_for(request.headers, getattr(g, "lai_key", None),
                       source_default=source_default,
                       request_id=request_info(request.scope).request_id)


def context_for(
    headers: Headers,
    key: Any,
    *,
    source_default: str | None = None,
    request_id: str | None = None,
) -> RequestContext:
    """The engine context for a request with ``headers`` made with ``key`` (a
    :class:`~lai.store.keyvalues.KeyInfo`, or None): the key gives the queue priority, the
    key name and prefix, the models it may use, its caps in the queue, whether it is
    local-only and its own spill deadline. ``request_id``
    is the id the response's ``x-request-id`` carries
    (``lai.proxy.access.request_info(scope).request_id``); a new one is made without it.
    Raises InvalidRequest for a bad X-Conversation-ID or an over-long label header.
    """
    return RequestContext(
        request_id=request_id or new_request_id(),
        priority=key.priority if key is not None else 1,
        key_name=key.name if key is not None else None,
        key_prefix=key.prefix if key is not None else None,
        allowed_models=(frozenset(key.models) if key is not None and key.models else None),
        quota=key.quota if key is not None else KeyQuota(),
        local_only=key is not None and key.has_scope(LOCAL_ONLY),
        spill_after=key.spill_after if key is not None else None,
        conversation_id=conversation_id(headers),
        username=_label(headers, "X-Username"),
        source=_label(headers, "X-Source") or source_default,
        display_name=_label(headers, "X-Display-Name"),
    )
