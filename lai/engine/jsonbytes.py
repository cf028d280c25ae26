"""Adding members to a JSON object's bytes without decoding and re-encoding it."""

from __future__ import annotations

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
