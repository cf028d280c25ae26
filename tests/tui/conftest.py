"""Fixtures for the TUI tests: a fixed time zone, an embedded app over real parts, and
a helper that waits for a condition while the app runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from lai.runtime import Runtime, build_runtime
from lai.tui.app import LaiApp
from lai.tui.embedded import EmbeddedClient
from tests.harness import make_settings

SIZE = (120, 34)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local; make local UTC so pictures match everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def embedded_app(tmp_path: Path) -> Callable[..., tuple[LaiApp, Runtime]]:
    """``embedded_app(providers, models, **server)`` -> (app, runtime): the real runtime
    (engine, SQLite store in tmp_path, recorder) behind an EmbeddedClient."""

    def make(providers: list[dict[str, Any]], models: list[dict[str, Any]],
             **server: Any) -> tuple[LaiApp, Runtime]:
        settings = make_settings(tmp_path, providers, models, **server)
        runtime = build_runtime(settings)
        runtime.engine.retry_delay = 0.01
        client = EmbeddedClient(runtime, config_path=tmp_path / "config.toml")
        return LaiApp(client), runtime

    return make


async def wait_for(pilot: Pilot[Any], condition: Callable[[], object],
                   timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)
