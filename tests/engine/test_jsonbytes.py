"""Replacing one member of JSON bytes without re-encoding: right for every encoding."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from lai.engine.jsonbytes import MemberReplacer, member_span, replace_member

TRICKY = ['plain', '', 'with "quotes"', 'back\\slash\\', '\\"', 'é☃\U0001f600',
          '"model": "x"', '{"model":1}', '\n\t\u0000', 'model']


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(TRICKY)
    if kind == 1:
        return rng.randrange(-10**6, 10**6)
    if kind == 2:
        return rng.choice([None, True, False, 1.5e-7])
    if kind == 3:
        return rng.choice(TRICKY) + str(rng.random())
    if kind in (4, 5):
        keys = ["model", "id", "choices", rng.choice(TRICKY), 'mo"del']
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def encodings(doc: dict[str, Any]) -> list[bytes]:
    return [orjson.dumps(doc), json.dumps(doc).encode(),
            json.dumps(doc, ensure_ascii=False, indent=2).encode(),
            json.dumps(doc, separators=(" ,", " : ")).encode()]


def test_replaces_the_top_level_member_in_any_encoding() -> None:
    rng = random.Random(20261201)
    checked = 0
    for _ in range(600):
        doc: dict[str, Any] = {}
        for _ in range(rng.randrange(5)):
            key = rng.choice(["id", "object", "choices", "x", rng.choice(TRICKY)])
            if key != "model":
                doc[key] = random_value(rng)
        # The model member somewhere among the others, after nested ones too.
        items = list(doc.items())
        items.insert(rng.randrange(len(items) + 1),
                     ("model", rng.choice([*TRICKY, None])))
        doc = dict(items)
        for raw in encodings(doc):
            out = MemberReplacer("model", "small")(raw)
            assert out is not None, raw
            assert orjson.loads(out) == {**doc, "model": "small"}, raw
            assert replace_member(raw, b'"model"', b'"small"') == out, raw
            checked += 1
    assert checked == 2400


def test_nested_and_lookalike_members_are_left_alone() -> None:
    raw = b'{"x":{"model":"inner"},"a\\"model":"k","model":"outer","m":["model"]}'
    out = MemberReplacer("model", "small")(raw)
    assert out == b'{"x":{"model":"inner"},"a\\"model":"k","model":"small","m":["model"]}'


@pytest.mark.parametrize("raw", [
    b'{"id":"x"}',                          # absent
    b'{"x":{"model":"inner"}}',             # only nested
    b'{"model":12}',                        # not a string (its end would be ambiguous)
    b'{"model":{"a":"b"}}',
    b'{"mod\\u0065l":"escaped key"}',       # the caller re-encodes these
    b'["model", "x"]',                      # not an object
])
def test_what_it_cannot_place_is_none(raw: bytes) -> None:
    assert member_span(raw, "model") is None
    assert MemberReplacer("model", "small")(raw) is None
    assert replace_member(raw, b'"model"', b'"small"') is None


def test_a_stream_of_like_chunks_reuses_the_prefix_and_notices_a_change() -> None:
    rename = MemberReplacer("model", "small")
    first = b'{"id":"c1","model":"/m.gguf","choices":[{"delta":{"content":"a"}}]}'
    assert rename(first) == b'{"id":"c1","model":"small","choices":[{"delta":{"content":"a"}}]}'
    # The same prefix: the remembered place is used.
    assert rename(b'{"id":"c1","model":"/m.gguf","choices":[]}') == (
        b'{"id":"c1","model":"small","choices":[]}')
    # A longer model name that starts like the first must not be cut in the middle.
    assert rename(b'{"id":"c1","model":"/m.gguf.2","choices":[]}') == (
        b'{"id":"c1","model":"small","choices":[]}')
    assert rename(b'{"id":"c2","model":null}') == b'{"id":"c2","model":"small"}'


def test_model_after_choices_reuses_the_suffix_and_is_not_fooled_by_escapes() -> None:
    """llama.cpp writes ``model`` after ``choices``: the bytes after it repeat."""
    rename = MemberReplacer("model", "small")
    tail = b'"created":1,"model":"/m.gguf","object":"chat.completion.chunk"}'
    for text in ("a", "b}]{", 'q\\"model\\":'):
        chunk = b'{"choices":[{"delta":{"content":' + orjson.dumps(text) + b'}}],' + tail
        out = rename(chunk)
        assert out is not None
        assert orjson.loads(out) == {**orjson.loads(chunk), "model": "small"}
    # The same tail after an escaped quote belongs to another key: not replaced.
    trap = b'{"x\\"model":"/m.gguf","object":"chat.completion.chunk"}'
    assert rename(b'{"choices":[],"model":"/m.gguf","object":"chat.completion.chunk"}')
    assert rename(trap) is None


def test_streams_of_like_chunks_are_right_with_the_remembered_places() -> None:
    rng = random.Random(7)
    for _ in range(300):
        before = {f"b{i}": random_value(rng) for i in range(rng.randrange(3))}
        after = {f"a{i}": random_value(rng) for i in range(rng.randrange(3))}
        rename = MemberReplacer("model", "small")
        model_first = rng.random() < 0.5
        encode = rng.choice([orjson.dumps, lambda d: json.dumps(d).encode()])
        for n in range(6):
            varying = {"choices": [{"delta": {"content": rng.choice(TRICKY) * n}}]}
            parts = [before, {"model": rng.choice(["/m.gguf", "/m.gguf" * 2, None])},
                     varying, after] if model_first else [
                before, varying, {"model": rng.choice(["/m.gguf", 'x"y'])}, after]
            doc = {k: v for part in parts for k, v in part.items()}
            raw = encode(doc)
            out = rename(raw)
            assert out is not None, raw
            assert orjson.loads(out) == {**doc, "model": "small"}, raw
