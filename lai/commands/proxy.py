"""``lai proxy``: serve the HTTP API until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lai import enginelock
from lai.config.loader import find_config_path, load_settings
from lai.config.models import Settings
from lai.engine.redact import Redactor, install_log_redaction
from lai.proxy.app import create_app
from lai.proxy.serve import (
    install_reload_handler,
    install_signal_handlers,
    serve_app,
    tcp_socket,
    unix_socket,
)
from lai.runtime import build_runtime

log = logging.getLogger("lai")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every upstream request at INFO: a line per request is noise in the
    # proxy's log and measurable time on its hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # What no format of lai's shows, not collected for every record (the logging
    # HOWTO's "Optimization"): the caller's file and line (a stack walk), the thread,
    # the process (a getpid system call) and the multiprocessing name. With the access
    # log on, that is a record per request (bench/README.md, "Where the CPU went").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup_access_log(fmt: str) -> None:
    """With ``server.access_log_format = "json"`` each access line is the JSON object
    alone (it carries its own time), so a log shipper can parse stderr line by line."""
    if fmt != "json":
        return
    access = logging.getLogger("lai.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False


async def _serve(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    settings, warnings = load_settings(path)
    # Upstream keys never reach the log, even quoted back in an upstream's error.
    install_log_redaction(Redactor.for_settings(settings))
    for warning in warnings:
        log.warning("%s", warning)
    server = settings.server
    setup_access_log(server.access_log_format)
    host = args.host or server.host
    port = server.port if args.port is None else args.port
    data_dir = server.data_dir
    # Before binding anything: an embedded TUI is asked to hand over; refused with one
    # line (exit 1) when it declines, does not answer, or another proxy runs.
    lock = await take_engine_lock(data_dir, wait=getattr(args, "handover_wait", 0.0))
    try:
        return await _serve_locked(settings, path, host, port)
    finally:
        lock.release()


HANDOVER_POLL = 0.2
"""Seconds between tries of the engine lock while an embedded TUI is asked to hand over."""
_HINT = "; close it, start the proxy, then open `lai` again: it attaches to the proxy."


async def take_engine_lock(data_dir: Path, *, wait: float) -> enginelock.EngineLock:
    """The engine lock of ``data_dir`` for this proxy. When an embedded TUI holds it and
    ``wait`` > 0, ask that TUI to hand over (its operator answers in a dialog) and wait up
    to ``wait`` seconds for it to release the lock. Raises EngineLocked (one line: who
    holds it, and whether it declined or did not answer) and OSError."""
    try:
        return enginelock.acquire(data_dir, "proxy", hint=_HINT)
    except enginelock.EngineLocked as exc:
        if wait <= 0 or enginelock.holder_role(exc.holder) != "tui":
            raise
        holder = enginelock.holder_text(exc.holder)
    enginelock.request_handover(data_dir)
    print(f"lai: {holder} runs the engine for {data_dir}; asked it to hand over "
          f"(answer in that TUI; waiting up to {wait:g} s)", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        while True:
            await asyncio.sleep(HANDOVER_POLL)
            try:
                lock = enginelock.acquire(data_dir, "proxy", hint=_HINT)
            except enginelock.EngineLocked:
                pass
            else:
                log.info("the embedded TUI handed the engine over; starting")
                return lock
            if enginelock.handover_request(data_dir) != os.getpid():
                raise enginelock.EngineLocked(
                    f"{holder} runs the engine for {data_dir} and declined to hand "
                    f"over{_HINT}", "")
            if loop.time() >= deadline:
                raise enginelock.EngineLocked(
                    f"{holder} runs the engine for {data_dir} and did not hand over "
                    f"within {wait:g} s{_HINT}", "")
    finally:
        enginelock.withdraw_handover(data_dir, os.getpid())


async def _serve_locked(settings: Settings, path: Path, host: str, port: int) -> int:
    server = settings.server
    data_dir = server.data_dir
    sockets = [tcp_socket(host, port)]
    sockets.append(unix_socket(data_dir / "lai.sock"))
    runtime = build_runtime(settings)
    # From now on the engine's redactor, which learns the secrets of every reload.
    install_log_redaction(runtime.engine.redact)
    app = create_app(runtime)
    shutdown = asyncio.Event()

    def on_signal() -> None:
        log.info("shutting down: finishing in-flight requests")
        runtime.begin_shutdown()

    install_signal_handlers(shutdown, on_signal)
    assert runtime.reloader is not None
    install_reload_handler(runtime.reloader.reload_soon)
    bound = sockets[0].getsockname()
    log.info("lai proxy on http://%s:%s (config %s, admin socket %s)",
             bound[0], bound[1], path, data_dir / "lai.sock")
    # A line on stdout that scripts and tests can wait for.
    print(f"lai proxy listening on http://{bound[0]}:{bound[1]}", flush=True)
    # What start-up made (modules, config, app) lives as long as the process: out of the
    # garbage collector's way, a full collection under load paused the loop ~13 ms, not
    # ~70 ms (p99 at 32 clients 90 -> 30 ms in the bench).
    gc.collect()
    gc.freeze()
    await serve_app(app, sockets, shutdown=shutdown, graceful_timeout=server.shutdown_timeout,
                    header_timeout=server.header_timeout)
    log.info("lai proxy stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(args))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop's loop and transports cost less per request than asyncio's (bench/README.md).
    try:
        import uvloop
    except ImportError:  # e.g. a platform without wheels: asyncio's loop works the same
        return None
    return uvloop.new_event_loop
