"""Serving the app with Hypercorn: a TCP listener plus the admin unix socket.

The admin socket ``data_dir/lai.sock`` is created with mode 0600: whoever can open it can
already read the database, so requests over it need no key (see ``lai.proxy.auth``).

How lai's connections extend Hypercorn (JSON answers to malformed HTTP, the request-head
timeout, the keep-alive timer, write gathering) lives in ``lai.proxy.connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from lai.errors import LaiError
from lai.proxy.connection import HEADER_TIMEOUT, LaiConfig, install

log = logging.getLogger("lai.proxy")


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one). Raises LaiError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LaiError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def unix_socket(path: Path) -> socket.socket:
    """The admin socket at ``path``, mode 0600. A stale file is replaced; a live one
    (another proxy for the same data_dir) is a LaiError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise LaiError(f"another lai proxy is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def hypercorn_config(
    sockets: list[socket.socket], graceful_timeout: float,
    header_timeout: float = HEADER_TIMEOUT,
) -> Config:
    """Hypercorn's settings for lai: its access log off (lai writes its own,
    ``lai.proxy.access``), request heads bounded in size and, through
    ``lai.proxy.connection``, in time."""
    config = LaiConfig()
    config.lai_header_timeout = header_timeout  # type: ignore[attr-defined]
    config.bind = [f"fd://{s.fileno()}" for s in sockets]
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = 75
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h11_max_incomplete_size = 64 * 1024
    return config


async def serve_app(
    app: Quart,
    sockets: list[socket.socket],
    *,
    shutdown: asyncio.Event,
    graceful_timeout: float = 30.0,
    header_timeout: float = HEADER_TIMEOUT,
) -> None:
    """Serve ``app`` on ``sockets`` until ``shutdown`` is set, then stop gracefully:
    in-flight requests get ``graceful_timeout`` seconds, then the app's shutdown runs.
    A client has ``header_timeout`` seconds to send each request head."""
    config = hypercorn_config(sockets, graceful_timeout, header_timeout)
    install()
    # Read now: Hypercorn may have closed the sockets by the time serve() returns.
    unix_paths = [s.getsockname() for s in sockets if s.family == socket.AF_UNIX]
    try:
        await serve(app, config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for path in unix_paths:
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def install_reload_handler(reload: Callable[[], None]) -> None:
    """SIGHUP reloads the config (``systemctl reload``, ``kill -HUP``). Nothing is
    installed where there is no SIGHUP (Windows) or the loop cannot take signal
    handlers (not the main thread, no Unix signals): ``lai config reload`` still works.
    Raises RuntimeError without a running loop."""
    sighup = getattr(signal, "SIGHUP", None)
    loop = asyncio.get_running_loop()
    if sighup is None:
        return
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(sighup, reload)


def install_signal_handlers(
    shutdown: asyncio.Event, on_signal: Callable[[], None] | None = None
) -> None:
    """SIGTERM and SIGINT start a graceful shutdown."""
    loop = asyncio.get_running_loop()

    def handler() -> None:
        if on_signal:
            on_signal()
        shutdown.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
