"""Durations as written on the command line: ``90s``, ``30m``, ``24h``, ``30d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_duration(text: str) -> timedelta:
    """``"30d"`` -> ``timedelta(days=30)``: a whole number and one unit of s, m, h, d, w.

    Surrounding spaces and upper-case units are accepted; zero is allowed (``0s``).
    Raises ValueError, with a message that quotes the input and shows the accepted form,
    for anything else (``1.5h``, ``-2d``, ``1h30m``, ``""``, ``10``).
    """
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: write a whole number and a unit, "
            "e.g. 90s, 30m, 24h, 30d or 2w"
        )
    amount, unit = int(match.group(1)), match.group(2)
    try:
        return timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None


def format_duration(delta: timedelta) -> str:
    """The shortest exact form of ``delta`` in the units :func:`parse_duration` reads
    (``timedelta(hours=48)`` -> ``"2d"``); fractions of a second are dropped."""
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
