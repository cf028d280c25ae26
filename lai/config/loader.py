"""Find ``config.toml``, read it, apply environment overrides and validate it.

The only way in is :func:`load_settings`, which hands back frozen :class:`Settings` and a
list of warnings; the parsed ``TOMLDocument`` never leaves this package. Every problem is a
:class:`~lai.errors.ConfigError` whose ``str`` is one line naming the file, the table and
the key, e.g. ``config.toml: providers[1].max_concurrent: must be >= 1``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from tomlkit.exceptions import ParseError, TOMLKitError

from lai.config.models import (
    Capabilities,
    ModelConfig,
    ProviderConfig,
    ServerSettings,
    Settings,
    env_name,
)
from lai.errors import ConfigError

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

# sqlite URLs, with or without a driver: sqlite:///rel.db, sqlite+aiosqlite:////abs.db
_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(?:\+[A-Za-z0-9_]+)?):///(?P<path>[^?]*)(?P<rest>.*)$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------- finding


def find_config_path(explicit: str | None) -> Path:
    """Return the config file to use.

    Looks at ``explicit`` (``--config``), else ``$LAI_CONFIG``, else ``./config.toml``, else
    ``~/.config/lai/config.toml``. A path the user named (``--config`` or ``$LAI_CONFIG``)
    must exist: lai never quietly falls back to another file when one was asked for.

    Raises:
        ConfigError: the named file does not exist, or none of the default places holds one;
            the message lists the places looked at and suggests ``lai config init``.
    """
    for named, source in ((explicit, "--config"), (os.environ.get("LAI_CONFIG"), "$LAI_CONFIG")):
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"{named}: no such config file (from {source}); "
                    f"create one with `lai config init --config {named}`"
                )
            return path
    candidates = [Path("config.toml"), Path.home() / ".config" / "lai" / "config.toml"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        "no config file found (looked at --config, $LAI_CONFIG, ./config.toml, "
        f"{candidates[1]}); create one with `lai config init`"
    )


# --------------------------------------------------------------------------- loading


def load_settings(
    path: Path, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Read ``path`` and return the settings and the warnings about it.

    Environment overrides (``PROVIDER_{ID}_ENDPOINT``, ``PROVIDER_{ID}_ENABLED``,
    ``PROVIDER_{ID}_API_KEY``, ``LAI_DATABASE_URL``) are applied after the file; an empty
    variable counts as unset. ``auth_secret = "env:NAME"`` is replaced by ``$NAME``. A
    relative ``data_dir`` or ``sqlite:///`` path (whether from the file or the environment)
    is made absolute against the directory of the config file, never the working directory.
    ``environ`` defaults to ``os.environ``. Each warning is one line,
    ``file: table[i].key: text``, about something odd but legal.

    Raises:
        ConfigError: the file cannot be read, is not valid TOML, fails validation, has a
            bad ``PROVIDER_{ID}_ENABLED`` value, or names an unset ``env:`` variable.
    """
    env = os.environ if environ is None else environ
    data = _read_toml(path)
    _apply_environment(data, env, path)
    settings = _validate(data, path)
    _check_database_url(settings.server.database_url, path)
    settings = _resolve_paths(settings, path)
    return settings, _warnings(settings, path)


def _check_database_url(url: str, path: Path) -> None:
    """Raise ConfigError unless ``url`` is a database URL SQLAlchemy has a dialect for."""
    # Imported here: the loader is imported by commands that never open a database.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url).get_dialect()
    except ArgumentError as exc:
        raise ConfigError(
            f"{path}: server.database_url: not a database URL SQLAlchemy understands "
            f"({exc}); e.g. sqlite:///data/lai.db or postgresql+psycopg://user@host/db"
        ) from None


def _read_toml(path: Path) -> dict[str, Any]:
    """The file as plain Python values (no tomlkit types)."""
    return _read_document(path).unwrap()


def _read_document(path: Path) -> tomlkit.TOMLDocument:
    """Parse ``path`` with tomlkit, keeping comments; for use inside ``lai.config`` only.

    Raises:
        ConfigError: unreadable file (``file: cannot read: ...``) or a TOML syntax error
            (``file: line N: message``).
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        # tomlkit ends its message with " at line N col M"; we lead with the line instead.
        message = re.sub(r" at line \d+ col \d+$", "", str(exc)).rstrip(".")
        # tomlkit reports running out of input as the character NUL.
        message = message.replace("Unexpected character: '\\x00'", "unexpected end of file")
        raise ConfigError(f"{path}: line {exc.line}: {message}") from None
    except TOMLKitError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _apply_environment(data: dict[str, Any], env: Mapping[str, str], path: Path) -> None:
    """Apply overrides and ``env:`` secrets to ``data`` in place."""
    url = env.get("LAI_DATABASE_URL")
    if url:
        server = data.setdefault("server", {})
        if isinstance(server, dict):
            server["database_url"] = url
    providers = data.get("providers")
    if not isinstance(providers, list):
        return  # validation will report the shape
    for i, provider in enumerate(providers):
        if not isinstance(provider, dict) or not isinstance(provider.get("id"), str):
            continue
        prefix = f"PROVIDER_{env_name(provider['id'])}_"
        if value := env.get(prefix + "ENDPOINT"):
            provider["endpoint"] = value
        if value := env.get(prefix + "ENABLED"):
            word = value.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ConfigError(
                    f"{path}: providers[{i}].enabled: ${prefix}ENABLED must be "
                    f"true/false/1/0/yes/no/on/off, got {value!r}"
                )
            provider["enabled"] = word in _TRUE
        if value := env.get(prefix + "API_KEY"):
            provider["auth_secret"] = value
            if provider.get("auth_type", "none") == "none":
                # Anthropic takes its key in x-api-key, everyone else as a bearer token.
                kind = "api_key" if provider.get("type") == "anthropic" else "bearer"
                provider["auth_type"] = kind
            continue
        secret = provider.get("auth_secret")
        if isinstance(secret, str) and secret.startswith("env:"):
            name = secret[len("env:") :].strip()
            where = f"{path}: providers[{i}].auth_secret"
            if not name:
                raise ConfigError(f"{where}: 'env:' needs a variable name, e.g. env:API_KEY")
            if not env.get(name):
                raise ConfigError(f"{where}: environment variable {name} is not set or empty")
            provider["auth_secret"] = env[name]


def _validate(data: Mapping[str, Any], path: Path) -> Settings:
    """Validate plain data read from ``path`` into :class:`Settings` (``source`` set).

    Raises:
        ConfigError: ``file: table[i].key: text`` for the first problem, with a count of
            the others.
    """
    if "source" in data:
        # ``source`` is a field of Settings that the file must not set.
        raise ConfigError(f"{path}: source: unknown key")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        where, text = _describe(errors[0], data)
        line = f"{path}: {where}: {text}" if where else f"{path}: {text}"
        if len(errors) > 1:
            more = len(errors) - 1
            line += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(line) from None
    return settings.model_copy(update={"source": path})


# --------------------------------------------------------------------------- errors


def _format_loc(loc: tuple[str | int, ...]) -> str:
    """``('providers', 1, 'max_concurrent')`` -> ``providers[1].max_concurrent``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else f'"{part}"'
            out += f".{key}" if out else key
    return out


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the table at ``loc`` (None if not a table)."""
    tables: dict[tuple[str | int, ...], type[BaseModel]] = {
        (): Settings,
        ("server",): ServerSettings,
        ("providers",): ProviderConfig,
        ("models",): ModelConfig,
    }
    shape = tuple(p for p in loc if not isinstance(p, int))
    if shape == ("models", "capabilities"):
        return Capabilities
    return tables.get(shape)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(err: ErrorDetails, data: Mapping[str, Any]) -> tuple[str, str]:
    """Turn one pydantic error into (``table[i].key``, short human text)."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    where = _format_loc(loc)
    key = loc[-1] if loc else ""
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        # Settings' cross checks already say ``providers[i].key: text``.
        if re.match(r"^[a-z_]+\[\d+\]\.\w+: ", message):
            return "", message
        # A table's own validator names its key first: "cost_per_1k_tokens cannot ...".
        model = _model_at(loc)
        first, _, rest = message.partition(" ")
        if model is not None and first in model.model_fields and rest:
            return _format_loc((*loc, first)), rest
        return where, message
    if kind == "missing":
        return where, "missing"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        text = "unknown key"
        if model is not None and isinstance(key, str):
            known = [k for k in model.model_fields if k != "source"]
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                text += f" (did you mean {close[0]}?)"
        return where, text
    if kind in ("bool_type", "bool_parsing"):
        return where, "must be a boolean"
    if kind in ("int_type", "int_parsing"):
        return where, "must be an integer"
    if kind == "int_from_float":
        return where, "must be a whole number"
    if kind in ("float_type", "float_parsing"):
        return where, "must be a number"
    if kind == "string_type":
        return where, "must be a string"
    if kind in ("path_type", "path_parsing"):
        return where, "must be a path (a string)"
    for name, op in (
        ("greater_than_equal", ">="),
        ("greater_than", ">"),
        ("less_than_equal", "<="),
        ("less_than", "<"),
    ):
        if kind == name:
            bound = next(iter(ctx.values()), "?")
            return where, f"must be {op} {_number(bound)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return where, f"must be one of {', '.join(choices)}"
    if kind == "string_pattern_mismatch":
        if key == "id":
            return where, (
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return where, f"must match {ctx.get('pattern')}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return where, "must not be empty"
        return where, f"must be at least {ctx.get('min_length')} characters"
    if kind in ("tuple_type", "list_type"):
        if loc in (("providers",), ("models",)) and isinstance(data.get(str(key)), dict):
            return where, f"must be an array of tables: write [[{key}]], not [{key}]"
        return where, "must be a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return where, "must be a table"
    text = err["msg"].replace("Input should be", "must be")
    return where, text[:1].lower() + text[1:]


# --------------------------------------------------------------------------- paths


def _resolve_paths(settings: Settings, path: Path) -> Settings:
    """Make a relative ``data_dir`` and sqlite path absolute against the config's folder."""
    # abspath, not resolve(): a symlinked config file keeps its data next to the link.
    base = Path(os.path.abspath(path)).parent
    server = settings.server
    data_dir = server.data_dir.expanduser()
    if not data_dir.is_absolute():
        data_dir = Path(os.path.normpath(base / data_dir))
    url = _absolute_sqlite_url(server.database_url, base)
    if data_dir == server.data_dir and url == server.database_url:
        return settings
    server = server.model_copy(update={"data_dir": data_dir, "database_url": url})
    return settings.model_copy(update={"server": server})


def _absolute_sqlite_url(url: str, base: Path) -> str:
    """``sqlite:///data/lai.db`` -> ``sqlite:////abs/base/data/lai.db``; others unchanged."""
    match = _SQLITE_URL.match(url)
    if match is None:
        return url
    raw = match["path"]
    # In-memory databases and SQLite URI filenames ("file:...") are not paths we may move.
    if raw in ("", ":memory:") or raw.startswith("file:"):
        return url
    file = Path(raw).expanduser()
    if file.is_absolute():
        return url if file == Path(raw) else f"{match['scheme']}:///{file}{match['rest']}"
    absolute = os.path.normpath(base / file)
    return f"{match['scheme']}:///{absolute}{match['rest']}"


# --------------------------------------------------------------------------- warnings


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warnings(settings: Settings, path: Path) -> list[str]:
    """Odd but legal things about ``settings``, one line each."""
    out: list[str] = []

    def warn(where: str, text: str) -> None:
        out.append(f"{path}: {where}: {text}")

    server = settings.server
    if not server.auth and not _is_loopback(server.host):
        warn(
            "server.auth",
            f"false while server.host is {server.host}: anyone who can reach the port "
            "can use every model and the admin API",
        )
    if not settings.providers:
        warn("providers", "no providers configured: lai cannot route any request")
    elif not any(p.enabled for p in settings.providers):
        warn("providers", "every provider is disabled: lai cannot route any request")
    if server.metrics_auth and not server.auth:
        warn("server.metrics_auth", "has no effect while server.auth is false")
    kept, text_kept = server.retention_days, server.content_retention_days
    if kept is not None and text_kept is not None and text_kept >= kept:
        warn("server.content_retention_days",
             f"has no effect: not less than server.retention_days ({kept}), which deletes "
             "the messages first")

    endpoints: dict[str, int] = {}
    env_names: dict[str, int] = {}
    for i, p in enumerate(settings.providers):
        where = f"providers[{i}]"
        if not settings.models_of(p.id):
            warn(f"{where}.id", f"no [[models]] entry uses provider {p.id!r}")
        if not re.match(r"^https?://[^/]", p.endpoint, re.IGNORECASE):
            warn(f"{where}.endpoint", f"{p.endpoint!r} is not an http:// or https:// URL")
        key = p.base_url.lower()
        if key in endpoints:
            warn(f"{where}.endpoint", f"same endpoint as providers[{endpoints[key]}]")
        else:
            endpoints[key] = i
        name = env_name(p.id)
        if name in env_names:
            warn(
                f"{where}.id",
                f"shares the environment name PROVIDER_{name}_* with "
                f"providers[{env_names[name]}]; overrides apply to both",
            )
        else:
            env_names[name] = i
        if p.is_cloud and p.auth_type == "none":
            warn(
                f"{where}.auth_type",
                f"none on a cloud provider ({p.type}); set auth_type and auth_secret",
            )
        if p.auth_type != "none" and not p.auth_secret:
            warn(f"{where}.auth_secret", f"empty while auth_type is {p.auth_type}")
        if p.auth_type == "none" and p.auth_secret:
            warn(f"{where}.auth_secret", "set but never sent because auth_type is none")
        if p.health_check_timeout > p.health_check_interval:
            warn(
                f"{where}.health_check_timeout",
                "longer than health_check_interval; checks will overlap",
            )
        if p.power_watts and not server.electricity_rate_kwh:
            warn(
                f"{where}.power_watts",
                "has no effect while server.electricity_rate_kwh is 0",
            )

    for i, m in enumerate(settings.models):
        where = f"models[{i}]"
        # An embedding model writes no tokens: its max_tokens means nothing.
        if m.max_tokens > m.context_window and m.kind == "chat":
            warn(
                f"{where}.max_tokens",
                f"{m.max_tokens} is larger than context_window {m.context_window}",
            )
        if m.id in m.fallbacks or f"{m.provider_id}/{m.id}" in m.fallbacks:
            warn(f"{where}.fallbacks", "lists the model itself")
    return out
