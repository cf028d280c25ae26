"""``lai`` with no command: the terminal UI, attached to a running proxy or embedded.

The mode is decided with a bare socket probe and the real client is built in a thread
once the UI is up (``DeferredClient``), so the first frame never waits for the store.
"""

from __future__ import annotations

import argparse
import logging
import os
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path

from lai.config.loader import find_config_path, load_settings
from lai.config.models import Settings
from lai.engine.redact import Redactor, install_log_redaction
from lai.tui.client import LaiClient
from lai.tui.deferred import DeferredClient
from lai.tui.probe import proxy_answers, socket_path

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 2
"""``tui.log`` is rotated at LOG_MAX_BYTES, keeping this many old files (tui.log.1, ...)."""


class _PrivateRotatingFileHandler(RotatingFileHandler):
    """A rotating log whose files are created 0600 whatever the umask (rotation renames
    the old file and opens a new one)."""

    def _open(self) -> TextIOWrapper:
        os.close(os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT, 0o600))
        return super()._open()


def setup_logging(settings: Settings) -> None:
    """Log to ``data_dir/tui.log`` (the terminal belongs to the UI), rotated at 5 MiB
    with two old files kept; every file 0600."""
    # Private (0700, 0600) before logging opens it; lai.store.private would import the
    # store's SQLAlchemy before the first frame.
    settings.server.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = _PrivateRotatingFileHandler(settings.server.data_dir / "tui.log",
                                          maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # httpx logs every request at INFO, and the board polls the proxy twice a second:
    # ~18 MB a day of lines that say nothing went wrong.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_log_redaction(Redactor.for_settings(settings))


def attached_client(settings: Settings, sock: Path, config_path: Path | None = None
                    ) -> LaiClient:
    """A client over a running proxy's admin socket, the store shared."""
    from lai.store.db import open_store
    from lai.tui.attached import AttachedClient

    return AttachedClient(settings, open_store(settings.server.database_url), sock=sock,
                          config_path=config_path)


def embedded_client(settings: Settings, config_path: Path) -> LaiClient:
    """A client over an in-process runtime (engine, store, recorder)."""
    from lai.runtime import build_runtime
    from lai.tui.embedded import EmbeddedClient

    runtime = build_runtime(settings)
    # The engine's redactor learns the secrets of every reload; the log uses it from now.
    install_log_redaction(runtime.engine.redact)
    return EmbeddedClient(runtime, config_path=config_path)


def make_client(settings: Settings, config_path: Path) -> DeferredClient:
    """Attached when a proxy answers on ``data_dir/lai.sock``, else embedded."""
    sock = socket_path(settings)
    if proxy_answers(sock):
        path = config_path.resolve()
        return DeferredClient("attached", str(sock),
                              lambda: attached_client(settings, sock, path))
    path = config_path.resolve()
    return DeferredClient("embedded", str(path), lambda: embedded_client(settings, path))


def run(args: argparse.Namespace) -> int:
    from lai.tui.app import LaiApp

    path = find_config_path(args.config)
    settings, _warnings = load_settings(path)
    setup_logging(settings)
    LaiApp(make_client(settings, path)).run()
    return 0
