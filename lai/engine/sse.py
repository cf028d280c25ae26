"""Server-sent events: split an upstream byte stream into events, without re-encoding."""

from __future__ import annotations


class SSEDecoder:
    """Incremental SSE decoder. ``feed`` returns the complete events in a chunk.

    Each event is ``(event_name or None, data)`` with the ``data:`` lines joined by
    ``\\n``, as bytes. Comments and ``id:``/``retry:`` fields are ignored.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: bytes | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, bytes]]:
        # The common chunk is one whole event, ``data: ...`` and a blank line, with
        # nothing pending: it is that event (what the loop below would make of it).
        if (chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and not self._buf
                and not self._data and self._event is None
                and chunk.find(b"\n", 6) == len(chunk) - 2 and chunk[-3:-2] != b"\r"):
            return [(None, chunk[6:-2])]
        buf = self._buf + chunk if self._buf else chunk
        out: list[tuple[bytes | None, bytes]] = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append((self._event, b"\n".join(self._data)))
                self._data = []
                self._event = None
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip()
        self._buf = buf[start:]
        return out

    def close(self) -> list[tuple[bytes | None, bytes]]:
        """Events still pending when the stream ends without a final blank line."""
        out = self.feed(b"\n\n") if (self._buf or self._data) else []
        self._buf = b""
        return out


def encode_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_event(body: bytes) -> bytes:
    """An SSE event carrying an OpenAI error body (ends a stream that broke mid-way)."""
    return b"data: " + body + b"\n\n"
