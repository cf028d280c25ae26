"""The SSE decoder under the engine's streams: a chunk that is one whole ``data:`` event
takes a short way, which must give the events the line-by-line reading gives, whatever
the chunk holds and whatever came before it."""

from __future__ import annotations

import itertools

from lai.engine.sse import SSEDecoder

PIECES = [
    b'data: {"a":1}\n\n',
    b"data: \n\n",
    b"data:  two spaces\n\n",
    b"data:no space\n\n",
    b"data: cr at the end\r\n\n",
    b"data: crlf\r\n\r\n",
    b"data: a bare \r inside\n\n",
    b"data: one\ndata: two\n\n",
    b"event: ping\ndata: named\n\n",
    b"event: ping\n",
    b": a comment\n\n",
    b"data: x\n\ndata: y\n\n",
    b"data: cut in the mid",
    b"dle\n\n",
    b"id: 7\ndata: with an id\n\n",
    b"\n",
]


def events(chunks: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    decoder = SSEDecoder()
    out = [e for chunk in chunks for e in decoder.feed(chunk)]
    return out + decoder.close()


def test_whole_events_decode_as_byte_by_byte_reading_does() -> None:
    for first, second, third in itertools.product(PIECES, repeat=3):
        whole = [first, second, third]
        stream = b"".join(whole)
        by_byte = [stream[i:i + 1] for i in range(len(stream))]  # never the short way
        assert events(whole) == events(by_byte), whole


def test_the_common_chunk_is_one_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"choices":[]}\n\n') == [(None, b'{"choices":[]}')]
    assert decoder.feed(b"event: message\n") == []
    assert decoder.feed(b"data: named\n\n") == [(b"message", b"named")]
