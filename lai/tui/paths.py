"""Completing a partly typed file path (for ``/attach PATH`` and the attach dialog)."""

from __future__ import annotations

import os


def complete_path(text: str) -> str | None:
    """The longest unambiguous completion of a partly typed path, or None.

    A single matching directory gets its trailing ``/`` so the next part can be typed.
    """
    if not text:
        return None
    expanded = os.path.expanduser(text)
    folder, stem = os.path.split(expanded)
    try:
        names = sorted(e.name for e in os.scandir(folder or ".")
                       if e.name.startswith(stem) and (stem.startswith(".")
                                                       or not e.name.startswith(".")))
    except OSError:
        return None
    if not names:
        return None
    common = os.path.commonprefix(names)
    completed = os.path.join(folder, common) if folder else common
    if len(names) == 1 and os.path.isdir(completed):
        completed += "/"
    if text.startswith("~"):  # keep what the user typed, not their home folder
        home = os.path.expanduser("~")
        if completed.startswith(home):
            completed = "~" + completed[len(home):]
    return completed if len(completed) > len(text) else None
