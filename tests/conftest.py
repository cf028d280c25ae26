"""Fixtures shared by the whole test suite; each block says what it provides."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream

# --- fake upstream model servers (tests/fakes/upstream.py) ----------------------------


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A started `FakeUpstream` on a free port, stopped after the test."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def upstream_factory() -> Iterator[Callable[..., FakeUpstream]]:
    """Call with `FakeUpstream` keyword arguments for another started fake; all stop at teardown."""
    started: list[FakeUpstream] = []

    def make(**kwargs: Any) -> FakeUpstream:
        fake = FakeUpstream(**kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


# --- end fake upstream model servers --------------------------------------------------

# --- a real lai proxy in the test's event loop (tests/harness.py) ---------------------


@pytest.fixture
async def proxy_factory(tmp_path):  # type: ignore[no-untyped-def]
    """``await proxy_factory(providers, models, **server)`` -> a started RunningProxy.

    Providers and models are lists of dicts (``harness.provider``/``harness.model``);
    keyword arguments go to ``[server]``. Every proxy is stopped after the test.
    """
    from tests.harness import make_settings, start_proxy

    started = []

    async def make(providers, models, *, retry_delay=0.05, admin_socket=False,
                   runtime_kwargs=None, **server):  # type: ignore[no-untyped-def]
        settings = make_settings(tmp_path, providers, models, **server)
        proxy = await start_proxy(settings, retry_delay=retry_delay,
                                  admin_socket=admin_socket, runtime_kwargs=runtime_kwargs)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.stop()


# --- end lai proxy ---------------------------------------------------------------------
