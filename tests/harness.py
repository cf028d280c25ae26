"""A real `lai proxy` in the test's event loop: the app served by Hypercorn on a free
127.0.0.1 port, with the real runtime (engine, store when present) behind it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lai.config.models import Settings
from lai.engine.engine import Engine
from lai.proxy.app import create_app
from lai.proxy.serve import serve_app, tcp_socket, unix_socket
from lai.runtime import Runtime, build_runtime


def provider(pid: str, url: str, **kw: Any) -> dict[str, Any]:
    """A ``[[providers]]`` entry for a fake upstream (fast health checks off by default)."""
    return {"id": pid, "endpoint": url, "type": "local", "max_concurrent": 4,
            "health_check_interval": 3600, **kw}


def model(mid: str, pid: str, **kw: Any) -> dict[str, Any]:
    return {"id": mid, "provider_id": pid, "context_window": 32768, **kw}


def make_settings(
    tmp_path: Path,
    providers: list[dict[str, Any]],
    models: list[dict[str, Any]],
    **server: Any,
) -> Settings:
    """Settings with the database and data_dir under ``tmp_path``; auth off unless given."""
    base = {
        "database_url": f"sqlite:///{tmp_path / 'lai.db'}",
        "data_dir": str(tmp_path / "data"),
        "auth": False,
        "queue_timeout": 5,
    }
    base.update(server)
    return Settings.model_validate({"server": base, "providers": providers, "models": models})


@dataclass
class RunningProxy:
    url: str
    runtime: Runtime
    http: httpx.AsyncClient
    socket_path: Path | None
    _shutdown: asyncio.Event
    _task: asyncio.Task[None]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    async def stop(self) -> None:
        """Graceful shutdown, as SIGTERM does: in-flight requests finish, store flushed."""
        if self._task.done():
            return
        self._shutdown.set()
        await self.http.aclose()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=20)


async def start_proxy(
    settings: Settings,
    *,
    retry_delay: float = 0.05,
    admin_socket: bool = False,
    runtime_kwargs: dict[str, Any] | None = None,
) -> RunningProxy:
    """Serve a real app for ``settings``; returns once it answers /health."""
    runtime = build_runtime(settings, **(runtime_kwargs or {}))
    runtime.engine.retry_delay = retry_delay
    app = create_app(runtime)
    sockets = [tcp_socket("127.0.0.1", 0)]
    sock_path = None
    if admin_socket:
        sock_path = settings.server.data_dir / "lai.sock"
        sockets.append(unix_socket(sock_path))
    port = sockets[0].getsockname()[1]
    shutdown = asyncio.Event()
    task = asyncio.create_task(serve_app(app, sockets, shutdown=shutdown, graceful_timeout=5,
                                         header_timeout=settings.server.header_timeout))
    url = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=url, timeout=30, trust_env=False)
    for _ in range(500):
        if task.done():
            await task  # raises what start-up raised
        try:
            r = await http.get("/health")
            if r.status_code == 200:
                break
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("proxy did not start")
    # The start-up health probes run in the background; let them land so that a test's
    # own checks and failures are counted from a settled state.
    for _ in range(500):
        if all(p.last_check is not None for p in runtime.engine.providers() if p.enabled):
            break
        await asyncio.sleep(0.01)
    return RunningProxy(url, runtime, http, sock_path, shutdown, task)
