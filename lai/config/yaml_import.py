"""Convert the original router's ``providers.yaml`` into a commented ``config.toml``.

The YAML is camelCase (``maxConcurrent``, ``providerId``, ``capabilities.functionCalling``);
lai's keys are the same names in snake_case. :func:`convert` checks every key and value,
collects every problem (one line each, naming the YAML path: ``providers[1].maxConcurrent:
must be an integer``), validates the result with the same models ``lai config check`` uses,
and only then renders TOML. Fields lai has no key for (``gpu``, ``location``) become
comments on their provider, so nothing the old file said is lost.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
import yaml
from pydantic import ValidationError

from lai.config.loader import _describe
from lai.config.models import Settings
from lai.errors import ConfigError

Check = Callable[[Any], str | None]
"""Returns None for a good value, else what is wrong with it."""


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _integer(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else "must be an integer"


def _number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return None if ok else "must be a number"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _strings(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "must be a list of strings"


PROVIDER_KEYS: dict[str, tuple[str, Check]] = {
    "id": ("id", _string),
    "name": ("name", _string),
    "type": ("type", _string),
    "endpoint": ("endpoint", _string),
    "priority": ("priority", _integer),
    "enabled": ("enabled", _boolean),
    "maxConcurrent": ("max_concurrent", _integer),
    "healthCheckInterval": ("health_check_interval", _number),
    "healthCheckTimeout": ("health_check_timeout", _number),
    "healthCheckPath": ("health_check_path", _string),
    "authType": ("auth_type", _string),
    "authSecret": ("auth_secret", _string),
}
"""providers.yaml key -> (config.toml key, check), in the order they are written."""

PROVIDER_NOTES = ("gpu", "location")
"""Provider fields lai has no key for: kept as comments above the provider's keys."""

MODEL_KEYS: dict[str, tuple[str, Check]] = {
    "id": ("id", _string),
    "name": ("name", _string),
    "providerId": ("provider_id", _string),
    "contextWindow": ("context_window", _integer),
    "maxTokens": ("max_tokens", _integer),
    "isDefault": ("is_default", _boolean),
    "costPer1kTokens": ("cost_per_1k_tokens", _number),
    "capabilities": ("capabilities", lambda v: None if isinstance(v, dict) else "must be a map"),
    "tags": ("tags", _strings),
}

CAPABILITY_KEYS: dict[str, tuple[str, Check]] = {
    "streaming": ("streaming", _boolean),
    "functionCalling": ("function_calling", _boolean),
    "vision": ("vision", _boolean),
    "jsonMode": ("json_mode", _boolean),
}

_TRAILING: dict[str, str] = {
    "type": "local | openai | anthropic",
    "priority": "lower is preferred",
    "max_concurrent": "requests in flight at once, at most",
    "health_check_interval": "seconds",
    "health_check_timeout": "seconds",
}
"""Short comments written after some keys."""

_CAMEL = {snake: camel for table in (PROVIDER_KEYS, MODEL_KEYS, CAPABILITY_KEYS)
          for camel, (snake, _check) in table.items()}
_ENV_REFERENCE = re.compile(r"^\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))$")
"""``${NAME}`` or ``$NAME``: a secret the original router read from the environment."""


class ImportProblems(ConfigError):
    """Everything wrong with a providers.yaml; ``problems`` holds one line per problem
    (``str`` joins them with newlines, unlike other ConfigErrors' single line)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (YAML would keep the last one)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            continue  # construct_mapping below reports it ("found unhashable key")
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _read_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ImportProblems([f"{name}: {where}{problem}"]) from None


def _unknown(key: Any, known: Mapping[str, Any] | tuple[str, ...]) -> str:
    text = "unknown key"
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"{text} (did you mean {close[0]}?)" if close else text


def _table(
    raw: Any, path: str, keys: Mapping[str, tuple[str, Check]], notes: tuple[str, ...],
    problems: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One YAML map -> (lai keys and values, kept notes); problems appended, not raised."""
    out: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: must be a map of keys")
        return out, kept
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in notes:
            kept[key] = value
            continue
        if key not in keys:
            problems.append(f"{where}: {_unknown(key, (*keys, *notes))}")
            continue
        snake, check = keys[key]
        wrong = check(value)
        if wrong:
            problems.append(f"{where}: {wrong}, got {value!r}")
            continue
        out[snake] = value
    return out, kept


def _yaml_path(where: str) -> str:
    """``providers[1].max_concurrent`` -> ``providers[1].maxConcurrent``."""
    return ".".join(
        re.sub(r"^[a-z_0-9]+", lambda m: _CAMEL.get(m.group(0), m.group(0)), part)
        for part in where.split(".")
    )


def _validate(data: dict[str, Any], name: str) -> list[str]:
    """What ``lai config check`` would refuse in ``data``, as YAML paths."""
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            where, text = _describe(err, data)
            if not where:  # cross checks put the path in the text: "models[0].x: ..."
                where, _, text = text.partition(": ")
            out.append(f"{name}: {_yaml_path(where)}: {text}")
        return out
    return []


def convert(text: str, name: str = "providers.yaml") -> str:
    """The commented ``config.toml`` for a providers.yaml ``text`` (``name`` is the file
    name used in messages and in the header).

    Raises:
        ImportProblems: the YAML does not parse, or has unknown keys or bad values; one
            line per problem, each naming the YAML path, e.g.
            ``providers.yaml: providers[0].maxConcurrent: must be >= 1``.
    """
    doc = _read_yaml(text, name)
    problems: list[str] = []
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ImportProblems([f"{name}: must be a map with `providers` and `models`"])
    for key in doc:
        if key not in ("providers", "models"):
            problems.append(f"{name}: {key}: {_unknown(key, ('providers', 'models'))}")
    providers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    models: list[dict[str, Any]] = []
    for table in ("providers", "models"):
        items = doc.get(table) or []
        if not isinstance(items, list):
            problems.append(f"{name}: {table}: must be a list")
            continue
        for i, raw in enumerate(items):
            path = f"{table}[{i}]"
            if table == "providers":
                out, kept = _table(raw, path, PROVIDER_KEYS, PROVIDER_NOTES, problems)
                secret = out.get("auth_secret", "")
                if m := _ENV_REFERENCE.match(secret):  # read at start-up, as env:NAME
                    out["auth_secret"] = f"env:{m.group(1) or m.group(2)}"
                providers.append((out, kept))
            else:
                out, _none = _table(raw, path, MODEL_KEYS, (), problems)
                if isinstance(out.get("capabilities"), dict):
                    caps, _none = _table(out["capabilities"], f"{path}.capabilities",
                                         CAPABILITY_KEYS, (), problems)
                    out["capabilities"] = caps
                models.append(out)
    problems = [p if p.startswith(f"{name}: ") else f"{name}: {p}" for p in problems]
    if not problems:
        problems = _validate({"providers": [p for p, _ in providers], "models": models}, name)
    if problems:
        raise ImportProblems(problems)
    return _render(providers, models, Path(name).name)


def _value(value: Any) -> str:
    return tomlkit.item(value).as_string()


def _line(key: str, value: Any) -> str:
    line = f"{key} = {_value(value)}"
    note = _TRAILING.get(key)
    return f"{line}  # {note}" if note else line


def _render(
    providers: list[tuple[dict[str, Any], dict[str, Any]]], models: list[dict[str, Any]],
    source: str,
) -> str:
    out = [
        f"# lai configuration, converted by `lai config import` from {source}.",
        "# Every key is explained in config.toml.example (`lai config init` writes it);",
        "# run `lai config check` after each edit. lai has no key for a provider's gpu and",
        "# location: they are kept as comments above its keys.",
        "",
        "[server]",
        "# Defaults: listen on 127.0.0.1:8012, SQLite at data/lai.db next to this file,",
        "# auth on (create keys with `lai keys create NAME`). Add host, port, database_url,",
        "# data_dir, auth, queue_timeout, ... here to change them.",
    ]
    for provider, kept in providers:
        out += ["", "[[providers]]"]
        out += [f"# {key}: {' '.join(str(value).split())}" for key, value in kept.items()]
        if provider.get("auth_secret") and not str(provider["auth_secret"]).startswith("env:"):
            out.append("# auth_secret was a literal in the YAML; `env:NAME` keeps it out of here")
        out += [_line(k, provider[k]) for k, _c in PROVIDER_KEYS.values() if k in provider]
    for model in models:
        out += ["", "[[models]]"]
        for key, _check in MODEL_KEYS.values():
            if key not in model:
                continue
            if key == "capabilities":
                caps = model[key]
                inner = ", ".join(f"{k} = {_value(caps[k])}" for k, _c in CAPABILITY_KEYS.values()
                                  if k in caps)
                out.append(f"capabilities = {{ {inner} }}" if inner else "capabilities = {}")
            else:
                out.append(_line(key, model[key]))
    return "\n".join(out) + "\n"
