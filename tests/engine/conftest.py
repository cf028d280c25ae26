"""An Engine on a real httpx client, for tests that drive the engine without HTTP in front."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from lai.config.models import Settings
from lai.engine.engine import Engine


@pytest.fixture
async def engine_factory() -> AsyncIterator[Callable[..., Engine]]:
    """``engine_factory(providers, models, **server)`` -> an Engine (not started)."""
    clients: list[httpx.AsyncClient] = []

    def make(providers: list[dict[str, Any]], models: list[dict[str, Any]],
             retry_delay: float = 0.05, **server: Any) -> Engine:
        settings = Settings.model_validate(
            {"server": {"queue_timeout": 5, **server}, "providers": providers, "models": models})
        client = httpx.AsyncClient(trust_env=False)
        clients.append(client)
        return Engine(settings, client, retry_delay=retry_delay)

    yield make
    for client in clients:
        await client.aclose()
