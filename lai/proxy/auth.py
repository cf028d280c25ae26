"""Who may call what: the ``lai_`` key check in front of every route.

With ``server.auth`` true:

- ``/v1/*`` needs a valid key, sent as ``Authorization: Bearer lai_...``, as a bare
  ``Authorization: lai_...`` or as ``x-api-key: lai_...`` (Anthropic-style clients).
  The verified key is put on ``g.lai_key`` (a ``lai.store.keyvalues.KeyInfo``), which
  gives the request its queue priority and allowed models (``lai.proxy.context``).
- ``/admin/*`` needs a key with scope ``admin`` over TCP.
- Requests over the admin unix socket (``data_dir/lai.sock``, mode 0600) need no key:
  whoever can open it can read the database anyway. A key sent over the socket is still
  checked, so that requests are attributed to it.
- ``/health`` and ``/`` (name and version, for connectivity probes) stay open;
  ``/metrics`` is open unless ``server.metrics_auth``. Every other path needs a key
  too, so an unknown path gets 401 before 404.

With ``server.auth`` false everything is open and Authorization headers are ignored.
Refusals are 401 ``invalid_api_key`` / 403 ``permission_error`` in the OpenAI shape;
neither they nor the log ever carry more of a key than its prefix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from quart import Quart, g, request

from lai.errors import LaiError, PermissionDenied, ServiceUnavailable
from lai.proxy.access import request_info
from lai.proxy.deps import runtime

if TYPE_CHECKING:
    from lai.runtime import Runtime
    from lai.store.keyvalues import KeyInfo

log = logging.getLogger("lai.proxy.auth")

ADMIN_SCOPE = "admin"
OPEN_PATHS = frozenset({"/health", "/"})
"""Paths anyone may call (``/metrics`` too, unless ``server.metrics_auth``)."""


def over_unix_socket(scope: Mapping[str, Any]) -> bool:
    """True when the request came in on a unix socket rather than TCP.

    Hypercorn sets ``server`` and ``client`` to None for a unix socket; uvicorn gives
    ``server`` as ``(path, None)``. A TCP peer always has a ``(host, port)`` pair. A scope
    *without* a ``server`` key (Quart's test client, or a server that leaves the
    optional key out) is not taken for the socket: when unsure, a key is required.
    """
    if "server" not in scope:
        return False
    server = scope["server"]
    if server is None:
        return "client" in scope and scope["client"] is None
    host, port = server[0], server[1] if len(server) > 1 else None
    return port is None and isinstance(host, str) and host.startswith("/")


class _Headers(Protocol):
    def get(self, key: str) -> str | None: ...


def presented_key(headers: _Headers) -> str | None:
    """The key a client sent, or None when it sent none.

    ``Authorization: Bearer X`` (any case of ``Bearer``) or a bare ``Authorization: X``,
    else ``x-api-key: X``. When both headers are present, the one holding a ``lai_``
    value wins, so an SDK's placeholder in one header does not hide the key in the other.
    """
    candidates: list[str] = []
    auth = headers.get("Authorization")
    if auth is not None:
        value = auth.strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            value = rest.strip()
        candidates.append(value)
    api_key = headers.get("x-api-key")
    if api_key is not None:
        candidates.append(api_key.strip())
    candidates = [c for c in candidates if c]
    for value in candidates:
        if value.startswith("lai_"):
            return value
    return candidates[0] if candidates else None


def _protected(path: str, metrics_auth: bool) -> tuple[bool, bool]:
    """(needs a key, is an admin endpoint) for ``path``.

    Closed by default: only the listed open paths skip the check, so a route added
    later, or an unknown path, is never reachable without a key.
    """
    if "//" in path:  # "//admin/x" must not slip past the admin check
        path = re.sub(r"/{2,}", "/", path)
    if path in OPEN_PATHS:
        return False, False
    if path == "/metrics":
        return metrics_auth, False
    return True, path == "/admin" or path.startswith("/admin/")


async def authenticate() -> None:
    """The ``before_request`` hook: :func:`check_key` for Quart's current request; sets
    ``g.lai_key`` for a verified key (and its name for the access log). Raises what
    ``check_key`` raises."""
    info = await check_key(runtime(), request.method, request.path, request.headers,
                           request.scope)
    if info is not None:
        g.lai_key = info
        request_info(request.scope).key_name = info.name


async def check_key(
    rt: Runtime, method: str, path: str, headers: _Headers, scope: Mapping[str, Any]
) -> KeyInfo | None:
    """Check the caller's key where one is needed; returns the verified key, or None
    when none is needed (auth off, an open path, keyless over the admin socket).

    Raises AuthenticationFailed (401), PermissionDenied (403, an admin endpoint without
    scope ``admin``) and ServiceUnavailable (503, keys cannot be checked: no store, or
    the database is down).
    """
    server = rt.settings.server
    if not server.auth:
        return None
    needs_key, admin = _protected(path, server.metrics_auth)
    if not needs_key:
        return None
    raw = presented_key(headers)
    local = over_unix_socket(scope)
    if local and raw is None:
        return None
    keys = rt.keys
    if keys is None:
        # Fail closed: auth is on but this runtime has no key store to check against.
        raise ServiceUnavailable(
            "API keys cannot be checked: this server has no key store.", code="auth_unavailable"
        )
    try:
        info = await keys.verify(raw)
    except LaiError as exc:
        log.info("refused %s %s: %s", method, path, exc.message)
        raise
    if admin and not local and not info.has_scope(ADMIN_SCOPE):
        log.info("refused %s %s: key %s lacks scope admin", method, path, info.label())
        raise PermissionDenied(
            f"API key {info.label()} lacks the scope 'admin' needed for {path}. "
            f"Create one with `lai keys create NAME --scope admin`, or use the admin socket.",
        )
    return info


def install_auth(app: Quart) -> None:
    """Run :func:`authenticate` before every request of ``app``."""
    app.before_request(authenticate)
