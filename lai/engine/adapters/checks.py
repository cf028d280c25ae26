"""Checking upstream output before it is used: what the adapters' parsers share.

An upstream's JSON is decoded, not trusted: each member a parser reads is checked for
the type the API gives it (null counts as absent), and a mismatch is an ``Unusable``
naming the member, e.g. ``choices[0].delta.content is a number, not a string``.
"""

from __future__ import annotations

from typing import Any


class Unusable(ValueError):
    """Upstream output lai cannot use; the message says which member and why."""


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
          int: "a number", float: "a number"}


def kind_of(value: Any) -> str:
    """``an object``, ``a string``, ... for a decoded JSON value."""
    return _KINDS.get(type(value), type(value).__name__)


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> None:
    """Raise Unusable unless ``value`` is None or a ``kind`` (a boolean is not a number)."""
    if value is None:
        return
    if isinstance(value, bool) and kind is not bool:
        raise Unusable(f"{where} is a boolean, not {what}")
    if not isinstance(value, kind):
        raise Unusable(f"{where} is {kind_of(value)}, not {what}")


def count(value: Any) -> int:
    """A token count as an int >= 0; anything odd (text, a boolean, inf) reads as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except (ValueError, OverflowError):
        return 0


def excerpt(data: bytes, limit: int = 60) -> str:
    """The start of some bytes, quoted, for an error message."""
    text = data[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(data) > limit else ""))


def not_json(raw: bytes) -> str:
    """Why a 200 body that does not decode is no answer, as an error message."""
    head = raw.lstrip()[:64].lower()
    if not head:
        return "upstream answered 200 with an empty body"
    if head.startswith(b"<"):
        return "upstream answered 200 with HTML or XML, not JSON"
    return "upstream answered 200 with a body that is not JSON"
