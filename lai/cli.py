"""Command line parsing only: every command is carried out by a module in ``lai.commands``.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lai import __version__
from lai.errors import ConfigError, LaiError


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # --config is accepted before or after the subcommand; SUPPRESS keeps a value given
    # before the subcommand from being overwritten by the subparser's default.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None if top else argparse.SUPPRESS,
        help="config file (default: $LAI_CONFIG, ./config.toml, ~/.config/lai/config.toml)",
    )


def _limit_flags(p: argparse.ArgumentParser) -> None:
    """The per-key limits of ``lai keys create`` and ``update`` ('none' removes one)."""
    p.add_argument("--max-concurrent", metavar="N",
                   help="requests in flight at once, over every provider")
    p.add_argument("--max-queued", metavar="N",
                   help="requests waiting at once; one more gets 429")
    p.add_argument("--rpm", metavar="N", help="requests per minute")
    p.add_argument("--tpm", metavar="N", help="tokens per minute")
    p.add_argument("--budget", metavar="USD/PERIOD", action="append", default=[],
                   help="spend per UTC day, week or month, e.g. 5.00/day (repeatable; "
                   "none/day removes one, none all)")
    p.add_argument("--spill-after", metavar="DURATION",
                   help="send its auto requests to the cloud at once when every local "
                   "provider's expected wait is longer, e.g. 5s (none: server.spill_after)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lai",
        description="Self-hosted router for OpenAI-compatible LLM traffic. "
        "Without a command, opens the terminal UI.",
    )
    _common(parser, top=True)
    parser.add_argument("--version", action="version", version=f"lai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("proxy", help="serve the OpenAI-compatible HTTP API")
    _common(p)
    p.add_argument("--host", help="listen address (default: server.host)")
    p.add_argument("--port", type=_port, help="listen port, 0 for a free one "
                   "(default: server.port)")
    p.add_argument("--handover-wait", type=_seconds, default=30.0, metavar="SECONDS",
                   help="when an embedded lai TUI runs the engine, ask it to hand over and "
                   "wait this long for its operator's answer; 0 refuses at once "
                   "(default: 30)")
    p.set_defaults(handler="proxy")

    keys = sub.add_parser("keys", help="create, list, rotate and revoke API keys")
    _common(keys)
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = ks.add_parser("create", help="create a key and print it once")
    _common(k)
    k.add_argument("name")
    k.add_argument("--expires", metavar="DURATION", help="e.g. 30d, 24h, 2w")
    k.add_argument("--scope", action="append", default=[], help="extra scope, e.g. admin")
    k.add_argument("--priority", type=int, choices=[0, 1], help="queue priority (0 first)")
    k.add_argument("--models", metavar="A,B", help="comma-separated model ids it may use")
    k.add_argument("--local-only", action="store_true",
                   help="never send its requests to a cloud provider (scope local-only)")
    _limit_flags(k)
    k = ks.add_parser("update", help="change a key's limits (by name: every key of it)")
    _common(k)
    k.add_argument("name_or_prefix", metavar="NAME_OR_PREFIX")
    k.add_argument("--local-only", action=argparse.BooleanOptionalAction, default=None,
                   help="keep its requests off cloud providers (--no-local-only: allow)")
    _limit_flags(k)
    k = ks.add_parser("list", help="list keys")
    _common(k)
    k.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for action, text in (
        ("revoke", "disable a key"),
        ("enable", "enable a key again"),
        ("delete", "delete a key for good"),
    ):
        k = ks.add_parser(action, help=text)
        _common(k)
        k.add_argument("name_or_prefix", metavar="NAME_OR_PREFIX")
    k = ks.add_parser("rotate", help="issue a new key; the old one works until the grace ends")
    _common(k)
    k.add_argument("name_or_prefix", metavar="NAME_OR_PREFIX")
    k.add_argument("--grace", metavar="DURATION", default="24h", help="default 24h")
    keys.set_defaults(handler="keys")

    db = sub.add_parser("db", help="migrations, size, vacuum and backup of the database")
    _common(db)
    ds = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _common(ds.add_parser("upgrade", help="migrate to the newest schema"))
    _common(ds.add_parser("current", help="print the current revision"))
    d = ds.add_parser("downgrade", help="migrate down to REV (or base)")
    _common(d)
    d.add_argument("rev", metavar="REV")
    d = ds.add_parser("size", help="database size on disk and rows per table")
    _common(d)
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(ds.add_parser("vacuum", help="return free room to the disk (SQLite: VACUUM)"))
    d = ds.add_parser("backup", help="copy a live SQLite database to PATH (PostgreSQL: "
                      "use pg_dump)")
    _common(d)
    d.add_argument("path", metavar="PATH", help="the backup file, or a folder to put "
                   "lai-<time>.db in")
    d.add_argument("--force", action="store_true", help="replace an existing file")
    db.set_defaults(handler="db")

    cfg = sub.add_parser("config", help="check or create the config file")
    _common(cfg)
    cs = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    _common(cs.add_parser("check", help="validate the config file and print warnings"))
    _common(cs.add_parser("reload", help="make the running lai proxy read its config again"))
    c = cs.add_parser("init", help="write a commented config.toml")
    _common(c)
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    c = cs.add_parser("import", help="convert the original router's providers.yaml "
                      "into a commented config.toml")
    _common(c)
    c.add_argument("yaml", metavar="PROVIDERS_YAML")
    c.add_argument("--output", "-o", metavar="PATH",
                   help="where to write the config, - for stdout (default: like `config "
                   "init`, --config, $LAI_CONFIG, else ./config.toml)")
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    cfg.set_defaults(handler="config")

    st = sub.add_parser("stats", help="usage and cost")
    _common(st)
    st.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    st.add_argument("--by", choices=["day", "model", "provider", "key"], default="day")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(handler="stats")

    parser.set_defaults(handler="tui")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lai`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"lai.commands.{args.handler}")
    try:
        code: int = module.run(args)
    except ConfigError as exc:
        print(f"lai: {exc}", file=sys.stderr)
        return 2
    except LaiError as exc:
        print(f"lai: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an unforeseen environment: one line, not a trace
        if os.environ.get("LAI_DEBUG"):
            raise
        print(f"lai: unexpected {type(exc).__name__}: {exc} (set LAI_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
