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
    found = _member(obj, orjson.dumps(key))
    return None if found is None else (found[1], found[2])


def replace_member(obj: bytes, key: bytes, value: bytes) -> bytes | None:
    """``obj`` with the value of its top-level member ``key`` (the key's JSON, e.g.
    ``b'"model"'``) replaced by ``value`` (JSON bytes): what a new ``MemberReplacer``
    gives for its first object, without keeping places for objects to come (a
    non-streamed answer). None when ``member_span`` cannot place it."""
    found = _member(obj, key)
    if found is None:
        return None
    return obj[:found[1]] + value + obj[found[2]:]


def _member(obj: bytes, wanted: bytes) -> tuple[int, int, int] | None:
    """(key start, value start, value end) of ``member_span``."""
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
                    if value is None:
                        return None
                    return token.start(), value.start(), value.end()
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

    A stream's chunks are alike, so where the member was is remembered, two ways:

    - the bytes up to the value (vLLM and OpenAI put ``model`` before ``choices``): an
      object that starts with the same bytes has the member at the same place, since a
      JSON parser's state after a prefix depends on nothing else;
    - the bytes from the key to the end (llama.cpp puts it after ``choices``): they hold
      no bracket but the final ``}``, so in an object that ends with them the key is a
      member of the top-level object, provided its opening quote is not escaped (a
      closing quote cannot be followed by ``model"``), which a byte other than a
      backslash before it proves.

    So a stream of like chunks costs a ``startswith`` or an ``endswith`` each. The value
    must be a string or null, whose end is unambiguous.
    """

    __slots__ = ("_wanted", "_new", "_old_prefix", "_new_prefix", "_old_suffix",
                 "_new_suffix")

    def __init__(self, key: str, value: str | None) -> None:
        self._wanted = orjson.dumps(key)
        self._new = orjson.dumps(value)
        self._old_prefix: bytes | None = None
        self._new_prefix = b""
        self._old_suffix: bytes | None = None
        self._new_suffix = b""

    def __call__(self, obj: bytes) -> bytes | None:
        """``obj`` with the member's value replaced; None when ``member_span`` cannot
        place it (the caller re-encodes). ``obj`` must be valid JSON."""
        old = self._old_prefix
        if old is not None and obj.startswith(old):
            return self._new_prefix + obj[len(old):]
        old = self._old_suffix
        if old is not None and obj.endswith(old):
            start = len(obj) - len(old)
            # After a backslash the quote may be escaped: then scan, to be sure.
            if start > 0 and obj[start - 1] != 0x5C:
                return obj[:start] + self._new_suffix
        found = _member(obj, self._wanted)
        if found is None:
            return None
        key, start, end = found
        self._old_prefix = obj[:end]
        self._new_prefix = obj[:start] + self._new
        tail = obj[key:].rstrip()
        if b"{" not in tail and b"[" not in tail and tail.count(b"}") == 1:
            self._old_suffix = obj[key:]
            self._new_suffix = obj[key:start] + self._new + obj[end:]
        return self._new_prefix + obj[end:]
