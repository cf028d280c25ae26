"""``lai config check``, ``lai config init``, ``lai config reload`` and
``lai config import``."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.resources import files
from pathlib import Path

from lai.config.loader import find_config_path, load_settings
from lai.errors import ConfigError, LaiError


def run(args: argparse.Namespace) -> int:
    """Carry out ``lai config <check|init|reload|import>`` and return the exit code.

    Raises:
        ConfigError: the config is missing or invalid (check, reload), the proxy refused
            the reload, or the target exists and --force was not given (init, import);
            ``lai.cli`` prints it and exits 2.
        LaiError: the new file cannot be written (init, import), or no proxy answers
            (reload); ``lai.cli`` exits 1.
    """
    if args.config_command == "check":
        return _check(args.config)
    if args.config_command == "init":
        return _init(args.config, force=args.force)
    if args.config_command == "reload":
        return _reload(args.config)
    if args.config_command == "import":
        return _import(Path(args.yaml), args.output or _init_target(args.config),
                       force=args.force)
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


def _reload(explicit: str | None) -> int:
    """Ask the proxy serving this config (over its admin socket) to reload it.

    Exit 0 when it applied the file, 2 when it refused it (the file does not validate:
    the proxy's one-line error is printed; the old config keeps serving), 1 when no
    proxy answers on the socket.
    """
    import httpx
    import orjson

    path = find_config_path(explicit)
    settings, _ = load_settings(path)  # the same error lai config check prints, exit 2
    sock = settings.server.data_dir / "lai.sock"
    transport = httpx.HTTPTransport(uds=str(sock))
    try:
        with httpx.Client(transport=transport, base_url="http://lai", timeout=30,
                          trust_env=False) as client:
            resp = client.post("/admin/config/reload")
    except httpx.HTTPError as exc:
        raise LaiError(f"no lai proxy answers on {sock} ({type(exc).__name__}); "
                       "a proxy that is not running reads the file when it starts") from None
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise LaiError(f"the proxy on {sock} answered HTTP {resp.status_code}") from None
    if resp.status_code != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        raise ConfigError(message or f"the proxy refused the reload (HTTP {resp.status_code})")
    changes = body.get("changes") or []
    print(f"reloaded {path}: " + (f"{_plural(len(changes), 'change')}" if changes
                                   else "no changes"))
    for line in changes:
        print(f"  {line}")
    for warning in body.get("warnings") or []:
        print(f"warning: {warning}")
    return 0


def example_config() -> str:
    """The commented example config shipped with lai (``lai/config/example.toml``)."""
    return files("lai.config").joinpath("example.toml").read_text(encoding="utf-8")


def _init_target(explicit: str | None) -> str:
    # Same precedence as lookup, so that `lai config check` afterwards finds this file.
    return explicit or os.environ.get("LAI_CONFIG") or "config.toml"


def _init(explicit: str | None, *, force: bool) -> int:
    target = Path(_init_target(explicit)).expanduser()
    _write_new(target, example_config(), force=force)
    print(f"wrote {target}; edit it, then run `lai config check`")
    return 0


def _import(source: Path, output: str, *, force: bool) -> int:
    # Here, not at the top: only this command needs PyYAML.
    from lai.config.yaml_import import ImportProblems, convert

    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        toml = convert(text, str(source))
    except ImportProblems as exc:
        for line in exc.problems:
            print(f"lai: {line}", file=sys.stderr)
        print(f"lai: {source}: nothing written", file=sys.stderr)
        return 2
    if output == "-":
        sys.stdout.write(toml)
        return 0
    target = Path(output).expanduser()
    _write_new(target, toml, force=force)
    print(f"wrote {target}; check it with `lai config check --config {target}`")
    return 0


def _write_new(target: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``target``, refusing an existing file unless ``force``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x" refuses an existing file atomically, with no window between test and write.
        with target.open("w" if force else "x", encoding="utf-8", newline="") as out:
            out.write(text)
    except FileExistsError:
        raise ConfigError(f"{target}: already exists; use --force to overwrite it") from None
    except OSError as exc:
        raise LaiError(f"{target}: cannot write: {exc.strerror or exc}") from None
