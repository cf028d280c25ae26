"""JSON bytes edited without decoding and re-encoding them: members added, one replaced."""

from __future__ import annotations

import re
from typing import Any

import orjson


def members(values: dict[str, Any]) -> bytes:
    """``{"a": 1}`` -> ``b',"a":1'``: the suffix that ``splice`` adds."""
    return b"," + orjson.dumps(values)[1:-1]


def splice(obj: bytes, suffix: bytes) -> bytes:
    """Add ``suffix`` (from ``members``) before the closing brace of the JSON object ``obj``.

    Raises ValueError when ``obj`` does not end like a JSON object.
    """
    end = obj.rstrip()
    if not end.endswith(b"}"):
        raise ValueError("not a JSON object")
    body = end[:-1].rstrip()
    if body.endswith(b"{"):
        return body + suffix[1:] + b"}"
    return body + suffix + b"}"


_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = re.compile(_STRING + rb"|[{}\[\]]")
"""A string (escapes included) or a bracket: JSON's other tokens contain neither, so the
next match after any token boundary is the next string or bracket of the document."""
_COLON = re.compile(rb"\s*:\s*")
_VALUE = re.compile(_STRING + rb"|null\b")


def member_span(obj: bytes, key: str) -> tuple[int, int] | None:
    """Where the value of the top-level member ``key`` of the JSON object ``obj`` is, as
    ``(start, end)``, when that value is a string or null and the key is written without
    escapes; None otherwise (no such member, another kind of value, not an object).

    ``obj`` must be valid JSON (decode it first): the scan does not check it.
    """
    wanted = orjson.dumps(key)
    depth = 0
    pos = 0
    search = _TOKEN.search
    while (token := search(obj, pos)) is not None:
        pos = token.end()
        first = obj[token.start()]
        if first == 0x22:  # a string: at depth 1 followed by ':' it is a member's key
            if depth == 1 and token.group() == wanted:
                colon = _COLON.match(obj, pos)
                if colon is not None:
                    value = _VALUE.match(obj, colon.end())
                    return None if value is None else value.span()
        elif first in (0x7B, 0x5B):  # { [
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return None
    return None


class MemberReplacer:
    """Replaces the value of one top-level member in JSON objects' bytes (a stream's
    ``"model"``), leaving every other byte as it came.

    The bytes up to the replaced value are remembered: the next object that starts with
    the same bytes has the member at the same place (a JSON parser's state after a
    prefix depends on nothing else), so a stream of like chunks costs one
    ``startswith`` each. The value must be a string or null, whose end is unambiguous.
    """

    __slots__ = ("_key", "_new", "_old_prefix", "_new_prefix")

    def __init__(self, key: str, value: str | None) -> None:
        self._key = key
        self._new = orjson.dumps(value)
        self._old_prefix: bytes | None = None
        self._new_prefix = b""

    def __call__(self, obj: bytes) -> bytes | None:
        """``obj`` with the member's value replaced; None when ``member_span`` cannot
        place it (the caller re-encodes). ``obj`` must be valid JSON."""
        old = self._old_prefix
        if old is not None and obj.startswith(old):
            return self._new_prefix + obj[len(old):]
        span = member_span(obj, self._key)
        if span is None:
            return None
        start, end = span
        self._old_prefix = obj[:end]
        self._new_prefix = obj[:start] + self._new
        return self._new_prefix + obj[end:]
