"""lai writes an ordinary response head itself (``lai.proxy.connection.response_head``):
the bytes must be the ones h11 writes, and h11's state machine must go on as after its own
``send`` (the body's framing, keep-alive, the next request). Anything h11 would refuse or
change goes down h11's own path."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lai.proxy.h11write import body_piece, response_head

REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: lai\r\nContent-Length: 2\r\n\r\n{}")
NEXT = b"GET /health HTTP/1.1\r\nHost: lai\r\n\r\n"


def after_request(data: bytes = REQUEST) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    while conn.next_event() not in (h11.NEED_DATA, h11.PAUSED):
        pass
    return conn


def rest_of_exchange(conn: h11.Connection, headers: list[tuple[bytes, bytes]],
                     lean: bool = False) -> list[object]:
    """What the body (two pieces, by ``body_piece`` when ``lean``), the end and the next
    request do on ``conn``: bytes written, states, the event h11 reads next (or the
    error it raises)."""
    seen: list[object] = []
    length = [v for n, v in headers if n.lower() == b"content-length"]
    size = int(length[0]) if length else 5
    for event in (h11.Data(data=b"x" * (size // 2)), h11.Data(data=b"y" * (size - size // 2)),
                  h11.EndOfMessage()):
        try:
            if lean and isinstance(event, h11.Data):
                seen.append(body_piece(conn, event.data))
            else:
                seen.append(conn.send(event))
        except h11.LocalProtocolError as err:
            seen.append(("refused", str(err)))
    seen.append((conn.our_state, conn.their_state))
    try:
        conn.start_next_cycle()
        conn.receive_data(NEXT)
        seen.append(type(conn.next_event()))
    except h11.LocalProtocolError as err:
        seen.append(("no next cycle", str(err)))
    return seen


def h11_way(headers: list[tuple[bytes, bytes]], status: int = 200) -> tuple[object, list[object]]:
    conn = after_request()
    try:
        head: object = conn.send(h11.Response(status_code=status, headers=headers))
    except h11.LocalProtocolError:
        return "refused", []
    return head, rest_of_exchange(conn, headers)


LAI = [(b"content-type", b"application/json"), (b"content-length", b"17"),
       (b"x-conversation-id", b"conv_0192837465abcdef01234567"), (b"x-provider", b"box"),
       (b"x-model", b"small"), (b"x-request-id", b"req_0192837465abcdef01234567"),
       (b"date", b"Wed, 02 Dec 2026 06:38:57 GMT"), (b"server", b"hypercorn-h11")]
STREAM = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
          (b"x-accel-buffering", b"no"), (b"x-model", b"small")]


@pytest.mark.parametrize("headers", [LAI, STREAM, [], [(b"X-Mixed-Case", b"a  b\tc")],
                                     [(b"x-empty", b"")]])
def test_lais_own_heads_are_written_as_h11_writes_them(headers) -> None:  # type: ignore[no-untyped-def]
    conn = after_request()
    head = response_head(conn, 200, headers)
    assert head is not None
    assert (head, rest_of_exchange(conn, headers, lean=True)) == h11_way(headers)


@pytest.mark.parametrize("headers", [
    [(b"connection", b"close")],  # h11 ends keep-alive for it
    [(b"Transfer-Encoding", b"chunked")],
    [(b"content-length", b"3"), (b"content-length", b"3")],
    [(b"content-length", b"3, 3")],
    [(b"x-bad", b"a\r\nx-injected: 1")],  # one header must not become two
    [(b"x-bad: a", b"b")],
    [(b"x-bad", b"nul\x00")],
    [(b"x-bad", b" leading")],
    [(b"bad name", b"v")],
    [(b"host", b"lai")],  # h11 writes it first
])
def test_heads_h11_would_refuse_or_change_are_left_to_h11(headers) -> None:  # type: ignore[no-untyped-def]
    conn = after_request()
    assert response_head(conn, 200, headers) is None
    assert conn.our_state is h11.SEND_RESPONSE  # untouched: h11's own path starts afresh


def test_a_status_h11_refuses_is_refused_the_same_way() -> None:
    conn = after_request()
    with pytest.raises(h11.LocalProtocolError):
        response_head(conn, 1000, LAI)
    assert conn.our_state is h11.SEND_RESPONSE


NAMES = st.sampled_from([b"content-type", b"Content-Length", b"content-length", b"x-model",
                         b"connection", b"transfer-encoding", b"X-A", b"host", b"x y",
                         b"x:y", b"x: y", b"x\r\ny", b"", b"\xff"])
VALUES = st.one_of(st.binary(max_size=12),
                   st.text(alphabet="ab 1\t\r\n\x00\x0b,:", max_size=8).map(str.encode),
                   st.sampled_from([b"a\r\nx-b: c", b"a\rb", b"a\nb", b"a: b", b"a b"]),
                   st.sampled_from([b"17", b"0", b"017", b"1" * 21, b"chunked", b"close"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6), st.sampled_from([200, 201, 404, 500]))
def test_any_head_is_either_left_to_h11_or_exactly_what_h11_writes(headers, status) -> None:  # type: ignore[no-untyped-def]
    conn = after_request()
    try:
        head = response_head(conn, status, headers)
    except h11.LocalProtocolError:
        head = "refused"
    if head is None:
        assert conn.our_state is h11.SEND_RESPONSE
        return
    expected = h11_way(headers, status)
    if head == "refused":
        assert expected[0] == "refused"
        return
    assert (head, rest_of_exchange(conn, headers, lean=True)) == expected


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def testbody_pieces_are_framed_as_h11_frames_them(version) -> None:  # type: ignore[no-untyped-def]
    request = REQUEST.replace(b"HTTP/1.1", b"HTTP/" + version)
    for headers in (LAI, STREAM):
        ours, theirs = after_request(request), after_request(request)
        assert ours.send(h11.Response(status_code=200, headers=headers)) == theirs.send(
            h11.Response(status_code=200, headers=headers))
        for piece in (b"a" * 10, b"b" * 7):
            assert body_piece(ours, piece) == theirs.send(h11.Data(data=piece))
        assert ours.send(h11.EndOfMessage()) == theirs.send(h11.EndOfMessage())
        assert (ours.our_state, ours.their_state) == (theirs.our_state, theirs.their_state)


def test_a_piece_past_the_content_length_is_refused_as_h11_refuses_it() -> None:
    conn = after_request()
    response_head(conn, 200, [(b"content-length", b"3")])
    with pytest.raises(h11.LocalProtocolError):
        body_piece(conn, b"four")
    assert conn.our_state is h11.ERROR
