"""Bad input of every kind gets an OpenAI-shaped error, and the server keeps serving."""

from __future__ import annotations

import pytest

from tests.harness import model, provider

MSG = [{"role": "user", "content": "hi"}]


def assert_openai_error(r, status: int, type_: str, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert err["type"] == type_
    if code is not None:
        assert err["code"] == code
    assert err["message"]
    return err


@pytest.fixture
async def proxy(proxy_factory, upstream):
    return await proxy_factory(
        [provider("box", upstream.url)],
        [model("small", "box", context_window=1000, max_tokens=256)],
        max_body_size=64 * 1024,
    )


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": 7, "messages": []}', "model"),
        (b'{"model": "small"}', "messages"),
        (b'{"model": "small", "messages": []}', "messages"),
        (b'{"model": "small", "messages": "hello"}', "messages"),
        (b'{"model": "small", "messages": [{"content": "x"}]}', "messages[0]"),
        (b'{"model": "small", "messages": [{"role": "user", "content": 5}]}', "messages[0]"),
        (b'{"model": "small", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
         "stream"),
        (b'{"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
         "max_tokens"),
        (b'{"model": "small", "messages": [{"role": "user", "content": "x"}], '
         b'"temperature": "hot"}', "temperature"),
        (b'\xff\xfe\x00garbage', "body"),
    ],
)
async def test_malformed_requests_are_400_and_never_reach_upstream(proxy, upstream, raw, param):
    r = await proxy.http.post("/v1/chat/completions", content=raw,
                              headers={"content-type": "application/json"})
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert err["param"] == param
    assert upstream.chat_count == 0
    ok = await proxy.http.post("/v1/chat/completions", json={"model": "small", "messages": MSG})
    assert ok.status_code == 200  # still serving


async def test_unknown_model_is_404_model_not_found(proxy):
    r = await proxy.http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": MSG})
    err = assert_openai_error(r, 404, "invalid_request_error", "model_not_found")
    assert "gpt-9" in err["message"] and "small" in err["message"]


async def test_prompt_larger_than_every_context_window_is_refused_before_upstream(proxy, upstream):
    big = [{"role": "user", "content": "word " * 2000}]
    r = await proxy.http.post("/v1/chat/completions", json={"model": "auto", "messages": big})
    assert_openai_error(r, 400, "invalid_request_error", "context_length_exceeded")
    r = await proxy.http.post("/v1/chat/completions",
                              json={"model": "small", "messages": MSG, "max_tokens": 5000})
    assert_openai_error(r, 400, "invalid_request_error", "context_length_exceeded")
    assert upstream.chat_count == 0


async def test_oversized_body_is_413(proxy):
    r = await proxy.http.post("/v1/chat/completions", content=b"x" * (65 * 1024),
                              headers={"content-type": "application/json"})
    assert_openai_error(r, 413, "invalid_request_error", "request_too_large")


async def test_unknown_paths_and_methods_are_openai_shaped(proxy):
    assert_openai_error(await proxy.http.get("/v1/nothing"), 404, "invalid_request_error")
    assert_openai_error(await proxy.http.get("/v1/chat/completions"), 405,
                        "invalid_request_error")
    assert_openai_error(await proxy.http.post("/admin/providers/nope/disable"), 404,
                        "invalid_request_error")


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "..", ".", "a" * 65, "x y", "caf\u00e9".encode()]
)
async def test_bad_conversation_id_header_is_400(proxy, bad):
    r = await proxy.http.post("/v1/chat/completions", json={"model": "small", "messages": MSG},
                              headers={"X-Conversation-ID": bad})
    assert_openai_error(r, 400, "invalid_request_error")
    r = await proxy.http.post("/v1/chat/completions", json={"model": "small", "messages": MSG},
                              headers={"X-Conversation-ID": "my-chat.1"})
    assert r.status_code == 200
    assert r.headers["X-Conversation-ID"] == "my-chat.1"


async def test_no_healthy_provider_is_503(proxy_factory, upstream):
    proxy = await proxy_factory([provider("box", upstream.url, enabled=False)],
                                [model("small", "box")])
    r = await proxy.http.post("/v1/chat/completions", json={"model": "small", "messages": MSG})
    err = assert_openai_error(r, 503, "service_unavailable", "no_healthy_provider")
    assert "box: disabled" in err["message"]
