"""The runtime: everything one process needs to serve, built by a factory, closed once.

``build_runtime(settings)`` makes the one ``httpx.AsyncClient`` of the process, the
engine, and (when asked) the store and its recorder. Both faces use it: ``lai proxy``
starts it inside Quart's ``while_serving``; the TUI in embedded mode starts it itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from lai.config.models import Settings
from lai.engine.clock import Clock, SystemClock
from lai.engine.engine import Engine

log = logging.getLogger("lai")


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The process's one upstream client. Per-provider timeouts are set per request."""
    total = sum(p.max_concurrent for p in settings.providers) or 10
    limits = httpx.Limits(
        max_connections=max(100, total * 2),
        max_keepalive_connections=max(20, total * 2),
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=30.0),
        limits=limits,
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment must not sit between lai and a LAN box
    )


@dataclass
class Runtime:
    """What a serving process holds. Attributes are set by ``build_runtime``."""

    settings: Settings
    client: httpx.AsyncClient
    engine: Engine
    clock: Clock
    extensions: dict[str, Any] = field(default_factory=dict)
    _started: bool = False

    async def start(self) -> None:
        """Start background work (health checks, recorder). Idempotent."""
        if self._started:
            return
        self._started = True
        await self.engine.start()

    async def close(self) -> None:
        """Stop background work, flush what must be kept, close the HTTP client."""
        if not self._started:
            await self.client.aclose()
            return
        self._started = False
        await self.engine.close()
        await self.client.aclose()


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Build (not start) a runtime for ``settings``. No IO happens here."""
    clock = clock or SystemClock()
    client = make_http_client(settings)
    engine = Engine(settings, client, clock=clock)
    return Runtime(settings=settings, client=client, engine=engine, clock=clock)
