"""Writing an HTTP/1.1 response as h11 writes it, for less: ``response_head`` and
``body_piece`` make the bytes ``h11.Connection.send`` would make and move its state
machine as it would. lai's connections (``lai.proxy.connection``) use them for every
response h11 would not add or drop a header of its own to; h11's private API is used
here and only here (``Connection._process_event``, ``_writer``, ``Headers``), written
against the release ``H11_SERIES`` names, which ``lai.proxy.connection.install`` checks.
``tests/proxy/test_response_head.py`` holds them to h11's own bytes and states.
"""

from __future__ import annotations

import re

import h11
from h11._headers import Headers as H11Headers

H11_SERIES = "0.16."
"""The h11 release these were written against."""

_FIELDS = re.compile(
    rb"(?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+: (?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?\r\n)*")
"""Header lines that h11 would accept one by one (a name is a token; a value has no NUL,
CR, LF, FF or VT, and no space or tab at either end), matched as one block."""
_LENGTH = re.compile(rb"[0-9]{1,20}")
_FRAMING = frozenset({b"connection", b"transfer-encoding", b"host"})
"""Response headers that h11 acts on beyond writing them: left to its own path."""


def response_head(conn: h11.Connection, status: int, headers: list[tuple[bytes, bytes]]
                  ) -> bytes | None:
    """The bytes ``conn.send(h11.Response(...))`` writes for this response, ``conn``'s
    state moved on as it would be; None, ``conn`` untouched, when the headers need h11's
    own path (one it would refuse or change, a framing or connection header).

    h11 validates each header with two regular expressions when the event is made, again
    when it adds ``Transfer-Encoding: chunked``, and works out the framing twice: lai's
    8-header answer head took ~18 us, a stream's ~37 us; ~9 us here (bench/README.md).
    Here one match covers every line, and the event goes through h11's state machine
    (``_process_event``: the framing, keep-alive, 100-continue) as ``send`` puts it.
    The caller has checked the case where h11 would add or drop headers itself: an
    HTTP/1.1 peer, keep-alive on, not HEAD or CONNECT, not 1xx, 204 or 304.
    Raises h11.LocalProtocolError as ``conn.send`` would.
    """
    items = []
    length = None
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING or b":" in name:
            return None
        if lower == b"content-length":
            if length is not None or not _LENGTH.fullmatch(value):
                return None
            length = value
        items.append((name, lower, value))
    fields = b"".join([b"%s: %s\r\n" % pair for pair in headers])
    # One line a header (no LF inside one), and no colon in a name: then each line's
    # name and value are the header's own, and the match checks each as h11 would.
    if fields.count(b"\n") != len(headers) or not _FIELDS.fullmatch(fields):
        return None
    if length is None:  # what h11 adds for a body of unknown length to an HTTP/1.1 peer
        items.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
        fields += b"Transfer-Encoding: chunked\r\n"
    event = h11.Response(headers=H11Headers(items), status_code=status, _parsed=True)
    try:
        conn._process_event(conn.our_role, event)
    except BaseException:
        conn._process_error(conn.our_role)
        raise
    return b"HTTP/1.1 %d \r\n%s\r\n" % (status, fields)


def body_piece(conn: h11.Connection, data: bytes) -> bytes:
    """What ``conn.send(h11.Data(data=data))`` writes while ``conn`` sends a body: the
    body writer h11 chose for the response (Content-Length, chunked, HTTP/1.0) alone. In
    SEND_BODY a Data event moves no state; h11's event, its checks and its state machine
    round took ~2.4 us of the ~2.6 us a piece, paid for every piece of a stream. Raises
    h11.LocalProtocolError (more than the Content-Length) with ``conn`` in ERROR, as
    ``send`` does."""
    out: list[bytes] = []
    try:
        conn._writer.send_data(data, out.append)  # type: ignore[union-attr]
    except BaseException:
        conn._process_error(conn.our_role)
        raise
    return out[0] if len(out) == 1 else b"".join(out)
