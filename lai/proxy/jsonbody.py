"""Request bodies as JSON: parsed with orjson, nested no deeper than lai can re-encode.

orjson parses 1024 levels of nesting but encodes only about 254, and lai re-encodes what
it forwards: a body nested between the two would fail on the way out. Bodies deeper
than ``MAX_DEPTH`` are refused up front with a 400 naming the limit.
"""

from __future__ import annotations

import orjson

from lai.errors import InvalidRequest

MAX_DEPTH = 128
"""Deepest nesting of arrays and objects a request body may have (real tool schemas
nest a few dozen levels at most)."""


ENCODE_DEPTH = 254
"""The deepest nesting orjson encodes (3.x: "Recursion limit reached" past it)."""


def depth_exceeds(value: object, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests lists and dicts more than ``limit`` levels deep.

    Asked of orjson's encoder itself, with ``value`` wrapped in enough lists that it
    fails exactly past ``limit``: ~4x faster than a walk in Python (145 vs 620 us for a
    38 KB body with 40 tool schemas), and it cannot disagree with the encoder lai uses.
    """
    wrapped: object = value
    for _ in range(ENCODE_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def parse_body(raw: bytes, *, param: str | None = "body") -> object:
    """The JSON value of a request body. Raises InvalidRequest (400) for an empty body,
    invalid JSON, or nesting deeper than ``MAX_DEPTH``."""
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", param=param)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", param=param) from None
    # Depth needs at least as many brackets: most bodies are settled by counting in C.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth_exceeds(value):
        raise InvalidRequest(
            f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep.",
            param=param,
        )
    return value
