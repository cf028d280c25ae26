"""``lai config check`` and ``lai config init``."""

from __future__ import annotations

import argparse
import os
from importlib.resources import files
from pathlib import Path

from lai.config.loader import find_config_path, load_settings
from lai.errors import ConfigError, LaiError


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai config <check|init>`` and return the exit code.

    Raises:
        ConfigError: the config is missing or invalid (check), or the target exists and
            --force was not given (init); ``lai.cli`` prints it and exits 2.
        LaiError: the new file cannot be written (init); ``lai.cli`` exits 1.
    """
    if args.config_command == "check":
        return _check(args.config)
    if args.config_command == "init":
        return _init(args.config, force=args.force)
    raise ValueError(f"unknown config command {args.config_command!r}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check(explicit: str | None) -> int:
    path = find_config_path(explicit)
    settings, warnings = load_settings(path)
    print(
        f"ok: {path}: {_plural(len(settings.providers), 'provider')}, "
        f"{_plural(len(settings.models), 'model')}"
    )
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def example_config() -> str:
    """The commented example config shipped with lai (``lai/config/example.toml``)."""
    return files("lai.config").joinpath("example.toml").read_text(encoding="utf-8")


def _init(explicit: str | None, *, force: bool) -> int:
    # Same precedence as lookup, so that `lai config check` afterwards finds this file.
    target = Path(explicit or os.environ.get("LAI_CONFIG") or "config.toml").expanduser()
    text = example_config()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x" refuses an existing file atomically, with no window between test and write.
        with target.open("w" if force else "x", encoding="utf-8", newline="") as out:
            out.write(text)
    except FileExistsError:
        raise ConfigError(f"{target}: already exists; use --force to overwrite it") from None
    except OSError as exc:
        raise LaiError(f"{target}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {target}; edit it, then run `lai config check`")
    return 0
