"""``lai`` with no command: the terminal UI, attached to a running proxy or embedded."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lai.config.loader import find_config_path, load_settings
from lai.config.models import Settings
from lai.tui.client import LaiClient


def setup_logging(settings: Settings) -> None:
    """Log to ``data_dir/tui.log``: the terminal belongs to the UI."""
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        filename=settings.server.data_dir / "tui.log",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def make_client(settings: Settings, config_path: Path) -> LaiClient:
    """Attached when a proxy answers on ``data_dir/lai.sock``, else embedded."""
    from lai.store.db import open_store
    from lai.tui.attached import AttachedClient, proxy_answers, socket_path

    sock = socket_path(settings)
    if proxy_answers(sock):
        return AttachedClient(settings, open_store(settings.server.database_url), sock=sock)
    from lai.runtime import build_runtime
    from lai.tui.embedded import EmbeddedClient

    return EmbeddedClient(build_runtime(settings), config_path=config_path.resolve())


def run(args: argparse.Namespace) -> int:
    from lai.tui.app import LaiApp

    path = find_config_path(args.config)
    settings, _warnings = load_settings(path)
    setup_logging(settings)
    LaiApp(make_client(settings, path)).run()
    return 0
