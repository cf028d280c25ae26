"""Keeping what lai writes private to its user, whatever the umask.

The data dir holds the conversation log (prompts, answers, images) and the admin socket,
so ``data_dir`` and every folder lai makes in it are 0700 and every file 0600. Files are
created with those modes (``os.open(..., 0o600)``, ``mkdir(mode=0o700)``: a umask can only
take bits away); what an older lai, a copy or a restore left looser is tightened at start
(:func:`tighten_tree`), with a warning naming what changed.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("lai.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
_LOOSE = 0o077
"""Group and other bits: none of them may stay."""


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (an existing folder is
    left as it is; :func:`tighten_tree` deals with those). Raises OSError."""
    missing: list[Path] = []
    for d in (path, *path.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        # mkdir's mode passes through the umask: 0700 survives 022 or 077, not 0277.
        os.chmod(d, DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (its folder 0700), so
    whatever opens it later (SQLite, a log handler) finds it private. Raises OSError."""
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT, 0o600)``: a new file is created private."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def _tighten(path: Path, changed: list[tuple[Path, int]]) -> None:
    try:
        st = os.lstat(path)
    except OSError:  # gone meanwhile, or in a folder we may not read
        return
    if stat.S_ISLNK(st.st_mode):
        return  # chmod would follow it out of the data dir
    mode = stat.S_IMODE(st.st_mode)
    if mode & _LOOSE:
        try:
            os.chmod(path, mode & ~_LOOSE)
        except OSError as exc:  # another user's file: say so, but keep serving
            log.warning("cannot make %s private (mode %04o): %s", path, mode,
                        exc.strerror or exc)
            return
        changed.append((path, mode))


def tighten_tree(root: Path, extra: Iterable[Path] = ()) -> list[tuple[Path, int]]:
    """Take group and other permissions off ``root``, everything under it and ``extra``
    (e.g. a database kept elsewhere); answers the paths changed with their old modes and
    logs one warning when there are any (and one per path it may not change). Symlinks
    are not followed; folders that cannot be listed are skipped. Never raises."""
    changed: list[tuple[Path, int]] = []
    if root.is_dir():
        _tighten(root, changed)
        for folder, dirs, files in os.walk(root):
            base = Path(folder)
            for name in (*dirs, *files):
                _tighten(base / name, changed)
    for path in extra:
        _tighten(path, changed)
    if changed:
        shown = ", ".join(f"{p} ({m:04o})" for p, m in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        log.warning("data readable by other users: tightened %d paths to owner-only "
                    "(0700 folders, 0600 files): %s%s", len(changed), shown, more)
    return changed
