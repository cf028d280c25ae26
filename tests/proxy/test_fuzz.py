"""Property-based fuzzing of the real proxy over HTTP: whatever a client sends, lai never
answers 500, and every answer is JSON (the OpenAI error shape for errors) or, for a
stream it accepted, SSE that ends with ``[DONE]``.

One proxy (auth on, a real key, a fast fake upstream, the real store) serves the whole
module from a thread of its own, so that hypothesis drives it with a plain blocking
client. Derandomized: CI runs the same examples every time.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from lai.store.db import open_store
from lai.store.keys import create_key
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningProxy, make_settings, model, provider, start_proxy

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=500,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""2,000 examples over the module (600 chat, 500 conversation, 400 upload, 500 raw HTTP);
generating them costs more than serving them."""


@dataclass
class Live:
    proxy: RunningProxy
    key: str
    http: httpx.Client
    port: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("fuzz")
    upstream = FakeUpstream(record=False).start()
    store = open_store(f"sqlite:///{tmp / 'lai.db'}")
    store.upgrade()
    key = create_key(store, "fuzzer").raw_key
    store.dispose()
    config = make_settings(
        tmp, [provider("box", upstream.url, max_concurrent=16)],
        [model("small", "box", context_window=8192, max_tokens=1024,
               capabilities={"vision": True})],
        auth=True, max_body_size=256 * 1024, max_image_size=64 * 1024, header_timeout=2)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = asyncio.run_coroutine_threadsafe(start_proxy(config), loop).result(60)
    http = httpx.Client(base_url=proxy.url, timeout=20, trust_env=False)
    try:
        yield Live(proxy, key, http, int(proxy.url.rsplit(":", 1)[1]))
        # It kept serving through everything.
        assert http.get("/health").status_code == 200
    finally:
        http.close()
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        upstream.stop()


def check(status: int, content_type: str, body: bytes, method: str = "GET") -> None:
    """The property: no 500, JSON everywhere (OpenAI-shaped when an error), or a
    complete SSE stream."""
    event(f"status {status}")  # --hypothesis-show-statistics shows the mix reached
    assert status != 500, body[:500]
    # 501: a Transfer-Encoding other than chunked (h11's answer, in lai's JSON).
    assert status < 500 or status in (501, 502, 503, 504), (status, body[:500])
    if method == "HEAD" or status == 204:  # 204: OPTIONS, its Allow header the answer
        assert not body or method == "HEAD"
        return
    if content_type.startswith("text/event-stream"):
        assert status == 200
        assert body.rstrip().endswith(b"data: [DONE]"), body[-300:]
        return
    if status == 200 and content_type.startswith("image/"):
        return
    assert content_type.startswith("application/json"), (status, content_type, body[:300])
    data = orjson.loads(body)
    if status >= 400:
        err = data["error"]
        assert set(err) == {"message", "type", "code", "param"}, data
        assert isinstance(err["message"], str) and err["message"]
        assert isinstance(err["type"], str)


def check_response(r: httpx.Response) -> None:
    check(r.status_code, r.headers.get("content-type", ""), r.content, r.request.method)


# --- strategies -------------------------------------------------------------------------

TEXT = st.text(max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)


def nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


DEEP = st.integers(min_value=100, max_value=400).map(nested)
MODEL = st.sampled_from(["small", "auto", "box", "box/small", "nope", "", "box/", "/small"]) \
    | SCALARS
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"])},
                             optional={"text": SCALARS, "image_url": JSON})
CONTENT = TEXT | st.lists(PART, max_size=2) | JSON
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]) | SCALARS},
    optional={"content": CONTENT, "tool_calls": JSON, "image_refs": JSON},
)
CHAT_BODY = st.fixed_dictionaries(
    {"model": MODEL, "messages": st.lists(MESSAGE, max_size=3) | JSON},
    optional={
        "stream": st.booleans() | SCALARS,
        "max_tokens": st.integers(min_value=-5, max_value=2**80) | SCALARS,
        "temperature": SCALARS, "stream_options": JSON, "tools": JSON,
        "extra": JSON | DEEP,
    },
)
def dumps(value: Any) -> bytes:
    # The stdlib encoder: it writes what orjson refuses to (ints past 64 bits, 400
    # levels of nesting, Infinity), which is what a client may send.
    return json.dumps(value).encode()


VALID_CHAT = st.fixed_dictionaries(
    {"model": st.sampled_from(["small", "auto", "box", "box/small"]),
     "messages": st.lists(st.fixed_dictionaries(
         {"role": st.sampled_from(["user", "system"]), "content": TEXT}), min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "max_tokens": st.integers(1, 100),
              "temperature": st.floats(0, 2), "extra": JSON | DEEP, "user": TEXT},
)
RAW_BODY = (VALID_CHAT.map(dumps) | VALID_CHAT.map(dumps)
            | CHAT_BODY.map(dumps)
            | JSON.map(dumps)
            | st.binary(max_size=200)
            | CHAT_BODY.map(dumps).flatmap(
                lambda b: st.integers(0, len(b)).map(lambda n: b[:n])))  # truncated JSON

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=80) \
    | st.integers(201, 400).map(lambda n: "a" * n)


@st.composite
def headers(draw: st.DrawFn, key: str) -> dict[str, bytes]:
    out: dict[str, str] = {}
    auth = draw(st.sampled_from(["bearer"] * 4 + ["bare", "x-api-key", "none", "garbage",
                                                  "both"]))
    if auth == "bearer":
        out["Authorization"] = f"Bearer {key}"
    elif auth == "bare":
        out["Authorization"] = key
    elif auth == "x-api-key":
        out["x-api-key"] = key
    elif auth == "garbage":
        out["Authorization"] = draw(HEADER_TEXT)
    elif auth == "both":
        out["Authorization"] = "Bearer " + draw(HEADER_TEXT)
        out["x-api-key"] = key
    for name in ("X-Conversation-ID", "X-Username", "X-Source", "X-Display-Name",
                 "Content-Type", "x-request-id", "Accept"):
        if draw(st.booleans()):
            out[name] = draw(HEADER_TEXT | st.sampled_from(
                ["application/json", "text/plain", "conv-1", "..", "a" * 64, "a" * 65]))
    return {k: v.strip().encode("latin-1") for k, v in out.items()}


# --- the properties -----------------------------------------------------------------------


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_chat_bodies_and_headers(live: Live, data: st.DataObject) -> None:
    body = data.draw(RAW_BODY)
    hdrs = data.draw(headers(live.key))
    path = data.draw(st.sampled_from(["/v1/chat/completions"] * 6 + [
        "//v1/chat/completions", "/v1//chat/completions", "/v1/chat/completions/"]))
    check_response(live.http.post(path, content=body, headers=hdrs))


@FUZZ
@given(data=st.data())
def test_conversation_queries_and_ids(live: Live, data: st.DataObject) -> None:
    auth = {"Authorization": f"Bearer {live.key}"}
    kind = data.draw(st.sampled_from(["list", "get", "patch", "delete", "stats"]))
    value = (st.integers(min_value=-(2**80), max_value=2**80).map(str) | TEXT
             | st.sampled_from(["1e3", " 5", "٣", "²", "0x10", "9" * 5000]))
    if kind == "list":
        params = data.draw(st.dictionaries(st.sampled_from(["q", "limit", "offset", "username"]),
                                           value, max_size=4))
        r = live.http.get("/v1/conversations", params=params, headers=auth)
    elif kind == "stats":
        params = data.draw(st.dictionaries(st.sampled_from(["days", "by"]), value, max_size=2))
        r = live.http.get("/v1/stats", params=params, headers=auth)
    else:
        cid = quote(data.draw(TEXT | st.sampled_from(["conv-1", "a" * 64, ".", "%", "a/b"])),
                    safe="")
        method = {"get": "GET", "patch": "PATCH", "delete": "DELETE"}[kind]
        content = data.draw(RAW_BODY | st.fixed_dictionaries(
            {"display_name": SCALARS}).map(dumps)) if method == "PATCH" else None
        r = live.http.request(method, f"/v1/conversations/{cid}", content=content,
                              headers=auth)
    check_response(r)


def _png(size: tuple[int, int] = (4, 4)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png()
IMAGE_BYTES = (st.just(PNG) | st.just(PNG) | st.binary(max_size=300)
               | st.integers(0, len(PNG)).map(lambda n: PNG[:n])
               | st.binary(min_size=1, max_size=8).map(lambda b: PNG[:40] + b + PNG[48:]))
ID = st.sampled_from(["c1", "m1", "ok-id.1", "c1", "m2"]) | TEXT \
    | st.sampled_from(["..", "a/b", "a" * 65, ""])


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_image_uploads(live: Live, data: st.DataObject) -> None:
    auth = {"Authorization": f"Bearer {live.key}"}
    wanted = ["conversation_id", "message_id"]
    both = data.draw(st.sampled_from([True, True, True, False]))
    names = wanted if both else data.draw(st.sets(st.sampled_from(wanted)))
    params = {k: data.draw(ID) for k in names}
    if data.draw(st.booleans()) and "message_id" in params:  # a fresh message: room for 5
        params["message_id"] = f"m{data.draw(st.integers(0, 10**9))}"
    shape = data.draw(st.sampled_from(["multipart"] * 4 + ["multipart-other-field", "raw"]))
    content = data.draw(IMAGE_BYTES)
    if shape == "raw":
        ctype = data.draw(HEADER_TEXT).strip().encode("latin-1")
        r = live.http.post("/v1/images/upload", params=params, content=content,
                           headers={**auth, "Content-Type": ctype})
    else:
        field = "file" if shape == "multipart" else data.draw(TEXT)
        filename = data.draw(st.sampled_from(["cat.png", "../x.png", ".png", "a" * 300]) | TEXT)
        ctype = data.draw(st.sampled_from(["image/png", "image/png", "text/plain", ""]))
        r = live.http.post("/v1/images/upload", params=params, headers=auth,
                           files={field: (filename, content, ctype)})
    check_response(r)
    if r.status_code == 400:
        event(r.json()["error"]["message"][:50])
    if r.status_code == 200:
        stored = r.json()
        got = live.http.get(f"/v1/images/{quote(params['conversation_id'], safe='')}/"
                            f"{quote(params['message_id'], safe='')}/{stored['filename']}",
                            headers=auth)
        assert got.status_code == 200 and got.content == content


def _raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[int, str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    if fields.get(b"transfer-encoding") == b"chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    elif b"content-length" in fields:
        body = body[: int(fields[b"content-length"])]
    return int(lines[0].split()[1]), fields.get(b"content-type", b"").decode(), body


@settings(FUZZ, max_examples=500)
@given(data=st.data())
def test_raw_http_framing(live: Live, data: st.DataObject) -> None:
    """Content-Length that lies, odd methods and targets, header junk, over a raw
    socket (the client half-closes, so a body promised but not sent ends the request)."""
    body = data.draw(RAW_BODY)
    method = data.draw(st.sampled_from([b"POST", b"GET", b"PUT", b"HEAD", b"OPTIONS", b"X"]))
    target = data.draw(st.sampled_from([
        b"/v1/chat/completions", b"http://lai/v1/chat/completions", b"//v1/chat/completions",
        b"/v1/conversations", b"/v1/models", b"/v1/images/upload", b"*", b"/%",
        b"/v1/chat/completions?x=%ff", b"/admin/events"]))
    length = data.draw(st.sampled_from(["exact", "short", "none", "junk", "chunked"]))
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: lai", b"Connection: close",
             b"Authorization: Bearer " + live.key.encode()]
    if length == "exact":
        lines.append(b"Content-Length: %d" % len(body))
    elif length == "short":
        lines.append(b"Content-Length: %d" % data.draw(st.integers(0, len(body))))
    elif length == "junk":
        lines.append(b"Content-Length: " + data.draw(st.sampled_from(
            [b"-1", b"1e3", b"0x10", b" 5", b"99999999999999999999999", b"", b"\xb2"])))
    elif length == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if data.draw(st.booleans()) \
            else body
    for _ in range(data.draw(st.integers(0, 2))):
        lines.append(data.draw(st.binary(min_size=1, max_size=30).filter(
            lambda b: b"\r" not in b and b"\n" not in b)))
    raw = _raw_exchange(live.port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    if not raw:
        return  # the request never ended (the body stopped short): no answer is due
    status, ctype, payload = _parse(raw)
    check(status, ctype, payload, method.decode())
