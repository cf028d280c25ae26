"""Change ``config.toml`` in place, keeping the user's comments, order and layout.

Used by the TUI (e.g. the "gaming mode" toggle that disables a GPU box). Every edit is
validated before it is written, and written atomically, so a bad value or a crash never
leaves a broken file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import tomlkit

from lai.config.loader import _read_document, _validate
from lai.errors import ConfigError


def set_provider_enabled(path: Path, provider_id: str, enabled: bool) -> None:
    """Set ``enabled`` of the provider ``provider_id`` in the file at ``path``.

    Comments, key order and formatting elsewhere in the file are kept.

    Raises:
        ConfigError: the file cannot be read or parsed, or has no provider with that id.
    """
    set_provider_field(path, provider_id, "enabled", enabled)


def set_provider_fields(path: Path, provider_id: str, values: dict[str, Any]) -> None:
    """Set several keys of one provider in one validated, atomic write (see
    ``set_provider_field`` for how each key is set). Raises ConfigError."""
    doc = _read_document(path)
    table = _find_provider(doc, provider_id, path)
    for key, value in values.items():
        if value is None:
            if key in table:
                del table[key]
        else:
            table[key] = str(value) if isinstance(value, Path) else value
    _validate(doc.unwrap(), path)
    _write_atomically(path, tomlkit.dumps(doc))


def set_provider_field(path: Path, provider_id: str, key: str, value: Any) -> None:
    """Set ``key`` of the provider ``provider_id`` to ``value`` in the file at ``path``.

    An existing key keeps its place and trailing comment; a new key is appended to the
    provider's table. ``value=None`` removes the key, so the default applies again. A
    :class:`~pathlib.Path` value is stored as a string. The file is only replaced if the
    edited config still validates (environment overrides are not applied for this check).

    Raises:
        ConfigError: the file cannot be read, parsed or written; there is no provider with
            that id; or the edit would make the config invalid (the usual one-line
            ``file: providers[i].key: text`` message). The file is unchanged then.
    """
    set_provider_fields(path, provider_id, {key: value})


def _find_provider(
    doc: tomlkit.TOMLDocument, provider_id: str, path: Path
) -> MutableMapping[str, Any]:
    """The ``[[providers]]`` table with ``id = provider_id`` (tomlkit's live object)."""
    providers = doc.get("providers")
    if isinstance(providers, list):  # AoT and inline arrays are both lists
        for table in providers:
            if isinstance(table, MutableMapping) and table.get("id") == provider_id:
                return table
    raise ConfigError(f"{path}: providers: no provider with id {provider_id!r}")


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file's contents so readers see either the old or the new file."""
    # Write through a symlink to its target, so a config kept in a dotfiles repo stays linked.
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(text.encode("utf-8"))
            shutil.copymode(target, tmp)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None
