"""Inputs that once produced a 500 or a plain-text answer, over a raw socket where the
HTTP itself is the input; and clients that never finish their request head."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.harness import model, provider
from tests.proxy.test_errors import assert_openai_error

MSG = [{"role": "user", "content": "hi"}]
BODY = orjson.dumps({"model": "small", "messages": MSG})


@pytest.fixture
async def proxy(proxy_factory, upstream):
    return await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                               header_timeout=0.5)


def port(proxy) -> int:  # type: ignore[no-untyped-def]
    return int(proxy.url.rsplit(":", 1)[1])


async def exchange(proxy, data: bytes, timeout: float = 5.0) -> tuple[int, dict, bytes]:  # type: ignore[no-untyped-def]
    """Send raw bytes, read until the server closes; (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port(proxy))
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower().decode(): v.strip().decode()
               for k, _, v in (line.partition(b":") for line in lines[1:])}
    return status, headers, body


def post(target: bytes, body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: lai\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


def error_of(headers: dict, body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json")
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "code", "param"}
    return err  # type: ignore[no-any-return]


async def test_json_nested_past_what_can_be_re_encoded_is_a_400(proxy, upstream) -> None:
    for depth in (130, 254, 300, 1000):
        deep = b"[" * depth + b"]" * depth
        raw = b'{"model": "small", "messages": [{"role": "user", "content": "x"}], "x": ' \
            + deep + b"}"
        r = await proxy.http.post("/v1/chat/completions", content=raw)
        err = assert_openai_error(r, 400, "invalid_request_error")
        assert "128 levels" in err["message"] and err["param"] == "body"
        r = await proxy.http.patch("/v1/conversations/c1", content=b'{"x": ' + deep + b"}")
        assert_openai_error(r, 400, "invalid_request_error")
    # 120 levels in an extra field are fine and reach the upstream re-encoded.
    ok = b'{"model": "small", "messages": [{"role": "user", "content": "x"}], "x": ' \
        + b"[" * 120 + b"]" * 120 + b"}"
    r = await proxy.http.post("/v1/chat/completions", content=ok)
    assert r.status_code == 200, r.text
    assert upstream.chat_count == 1


@pytest.mark.parametrize("query", [
    "offset=99999999999999999999", "offset=1000000001", "limit=99999999999999999999",
    "offset=-1", "offset=1e3", "limit=%C2%B2", "offset=٣", "limit=0x10", "offset=" + "9" * 5000,
])
async def test_integer_query_parameters_are_bounded(proxy, query) -> None:
    r = await proxy.http.get(f"/v1/conversations?{query}")
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert err["param"] in ("offset", "limit")


@pytest.mark.parametrize("query", ["days=99999999999999999999", "days=²", "days=-3"])
async def test_stats_days_is_bounded(proxy, query) -> None:
    r = await proxy.http.get(f"/v1/stats?{query}")
    assert_openai_error(r, 400, "invalid_request_error")


@pytest.mark.parametrize("target", [
    b"//v1/chat/completions", b"http://lai/v1/chat/completions",
    b"http://other.host:9/v1/chat/completions", b"/v1//chat/completions",
    b"/v1/chat/%63ompletions",
])
async def test_odd_spellings_of_the_chat_path_are_served_as_chat(proxy, upstream, target) -> None:
    status, headers, body = await exchange(proxy, post(target))
    assert status == 200, body
    assert orjson.loads(body)["object"] == "chat.completion"
    assert headers["x-provider"] == "box" and headers["x-request-id"].startswith("req_")
    assert upstream.chat_count == 1


@pytest.mark.parametrize("target", [b"/v1/messages", b"//v1/messages", b"/v1//messages",
                                    b"/v1/messages?beta=true"])
async def test_the_messages_path_however_written_is_served_by_the_messages_face(
    proxy, upstream, target
) -> None:
    body = orjson.dumps({"model": "small", "max_tokens": 16, "messages": MSG})
    status, headers, answer = await exchange(proxy, post(target, body))
    assert status == 200, answer
    assert orjson.loads(answer)["type"] == "message"
    assert headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(("method", "target", "shape"), [
    (b"GET", b"/v1/messages", "anthropic"), (b"PUT", b"/v1/messages/count_tokens", "anthropic"),
    (b"GET", b"/v1/chat/completions", "openai"), (b"GET", b"/v1/responses", "openai"),
])
async def test_other_methods_on_the_served_paths_are_a_json_405(proxy, method, target,
                                                                shape) -> None:
    status, headers, answer = await exchange(
        proxy, method + b" " + target + b" HTTP/1.1\r\nHost: lai\r\nConnection: close\r\n\r\n")
    assert status == 405 and headers["x-request-id"].startswith("req_")
    if shape == "anthropic":
        assert orjson.loads(answer)["type"] == "error" and headers["allow"] == "POST"
    else:
        assert error_of(headers, answer)["code"] == "method_not_allowed"


async def test_paths_quart_redirects_answer_json(proxy) -> None:
    status, headers, body = await exchange(
        proxy, b"GET /v1//models HTTP/1.1\r\nHost: lai\r\nConnection: close\r\n\r\n")
    assert status == 308 and headers["location"].endswith("/v1/models")
    assert "/v1/models" in error_of(headers, body)["message"]
    status, headers, body = await exchange(proxy, post(b"/v1/chat/completions/"))
    assert status == 404
    error_of(headers, body)


@pytest.mark.parametrize(("data", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: lai\r\nContent-Length: x\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: lai\r\nContent-Length: 5\r\n"
     b"Content-Length: 7\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: lai\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: lai\r\nTransfer-Encoding: gzip\r\n\r\n",
     501),
])
async def test_malformed_http_gets_an_openai_shaped_json_answer(proxy, data, status) -> None:
    got, headers, body = await exchange(proxy, data)
    assert got == status, body
    err = error_of(headers, body)
    assert err["type"] == "invalid_request_error" and err["message"]
    assert (await proxy.http.get("/health")).status_code == 200  # still serving


async def test_a_client_trickling_its_headers_is_closed_after_the_header_timeout(proxy) -> None:
    head = post(b"/v1/chat/completions").split(b"\r\n\r\n")[0]
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port(proxy))
    sent = 0
    try:
        while not reader.at_eof() and sent < len(head):
            writer.write(head[sent:sent + 1])
            sent += 1
            await asyncio.sleep(0.05)
            if reader._buffer:  # type: ignore[attr-defined]  # the answer arrived
                break
    except ConnectionError:
        pass
    raw = await asyncio.wait_for(reader.read(), 5)
    elapsed = time.monotonic() - t0
    writer.close()
    assert raw.startswith(b"HTTP/1.1 408 "), raw
    assert b'"request_timeout"' in raw
    assert 0.4 < elapsed < 3.0, elapsed
    assert sent < len(head)  # it never finished: closed while still trickling


async def test_trickling_the_next_request_on_a_kept_alive_connection_is_closed_too(proxy) -> None:
    # The timer of a later request starts with its first bytes (not when the connection
    # opened): a first request served, then a second head sent a byte at a time.
    reader, writer = await asyncio.open_connection("127.0.0.1", port(proxy))
    writer.write(b"GET /health HTTP/1.1\r\nHost: lai\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    await asyncio.sleep(0.8)  # past the header timeout while idle: keep-alive holds
    trickled = post(b"/v1/chat/completions").split(b"\r\n\r\n")[0]
    t0 = time.monotonic()
    sent = 0
    try:
        while not reader.at_eof() and sent < len(trickled):
            writer.write(trickled[sent:sent + 1])
            sent += 1
            await asyncio.sleep(0.05)
            if reader._buffer:  # type: ignore[attr-defined]  # the answer arrived
                break
    except ConnectionError:
        pass
    raw = await asyncio.wait_for(reader.read(), 5)
    elapsed = time.monotonic() - t0
    writer.close()
    assert raw.startswith(b"HTTP/1.1 408 "), raw
    assert 0.4 < elapsed < 3.0, elapsed
    assert sent < len(trickled)


async def test_a_connection_that_sends_nothing_is_closed_but_keep_alive_is_kept(proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port(proxy))
    t0 = time.monotonic()
    raw = await asyncio.wait_for(reader.read(), 5)
    assert raw.startswith(b"HTTP/1.1 408 ") and 0.4 < time.monotonic() - t0 < 3.0
    writer.close()

    # A client that finished a request keeps its idle connection past the header
    # timeout (Hypercorn's keep-alive), and the next request on it is served.
    reader, writer = await asyncio.open_connection("127.0.0.1", port(proxy))
    get = b"GET /health HTTP/1.1\r\nHost: lai\r\n\r\n"
    for _ in range(2):
        writer.write(get)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(0.8)
    assert not reader.at_eof()
    writer.close()


async def test_an_early_answer_reaches_a_client_still_sending_its_body(
    proxy_factory, upstream
) -> None:
    # 401 (no key) and 413 (Content-Length over the limit) are decided from the headers,
    # before the body is in: the client must still read them, not a reset connection.
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True, max_body_size=512 * 1024)
    big = b"x" * (2 * 1024 * 1024)
    for path in ("/v1/chat/completions", "/v1/images/upload", "/v1/conversations/c1"):
        for _ in range(4):
            r = await proxy.http.post(path, content=big)
            assert_openai_error(r, 401, "authentication_error", "invalid_api_key")
    r = await proxy.http.post("/v1/chat/completions", content=big,
                              headers={"Authorization": "Bearer lai_" + "0" * 32})
    assert r.status_code == 401
    # The same connection then serves the next request.
    assert (await proxy.http.get("/health")).status_code == 200


async def test_options_answers_its_allow_header_without_an_html_body(proxy) -> None:
    for path in ("/v1/chat/completions", "/v1/models", "/v1/conversations/c1"):
        r = await proxy.http.options(path)
        assert r.status_code == 204 and r.content == b""
        assert "GET" in r.headers["allow"] or "POST" in r.headers["allow"]
        assert r.headers["x-request-id"].startswith("req_")
