"""The conversation log over HTTP, through the real proxy with its store and recorder."""

from __future__ import annotations

from tests.harness import model, provider


async def _chat(proxy, cid: str, messages, **headers):  # type: ignore[no-untyped-def]
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": "small", "messages": messages},
        headers={"X-Conversation-ID": cid, **headers},
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


async def test_list_get_search_rename_delete(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    history = [{"role": "user", "content": "Tell me about otters"}]
    answer = await _chat(proxy, "otters-1", history, **{"X-Username": "ana",
                                                         "X-Source": "curl",
                                                         "X-Display-Name": "Otters"})
    history += [{"role": "assistant", "content": answer},
                {"role": "user", "content": "Do they hold hands while sleeping?"}]
    await _chat(proxy, "otters-1", history)
    await _chat(proxy, "weather-1", [{"role": "user", "content": "Rain tomorrow?"}])
    await proxy.runtime.recorder.flush()

    r = await proxy.http.get("/v1/conversations")
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list" and body["has_more"] is False
    assert [c["id"] for c in body["data"]] == ["weather-1", "otters-1"]

    page = (await proxy.http.get("/v1/conversations", params={"limit": 1})).json()
    assert len(page["data"]) == 1 and page["has_more"] is True

    hits = (await proxy.http.get("/v1/conversations", params={"q": "sleeping"})).json()
    assert [c["id"] for c in hits["data"]] == ["otters-1"]

    conv = (await proxy.http.get("/v1/conversations/otters-1")).json()
    assert (conv["username"], conv["source"], conv["display_name"]) == ("ana", "curl", "Otters")
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    last = conv["messages"][-1]
    assert last["provider"] == "box" and last["model"] == "small" and last["tokens"] == 3
    assert isinstance(last["created_at"], int)

    r = await proxy.http.patch("/v1/conversations/otters-1", json={"display_name": "Sea otters"})
    assert r.status_code == 200 and r.json()["display_name"] == "Sea otters"

    r = await proxy.http.delete("/v1/conversations/otters-1")
    assert r.json() == {"id": "otters-1", "object": "conversation.deleted", "deleted": True}
    r = await proxy.http.get("/v1/conversations/otters-1")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert (await proxy.http.delete("/v1/conversations/otters-1")).status_code == 404


async def test_bad_arguments_are_openai_shaped_400s(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"offset": "-1"}):
        r = await proxy.http.get("/v1/conversations", params=params)
        assert r.status_code == 400, params
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] in params
    await _chat(proxy, "c1", [{"role": "user", "content": "hi"}])
    await proxy.runtime.recorder.flush()
    for body in ({}, {"display_name": 3}, {"display_name": "x", "username": "y"}, [1]):
        r = await proxy.http.patch("/v1/conversations/c1", json=body)
        assert r.status_code == 400, body
    r = await proxy.http.patch(
        "/v1/conversations/c1", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "error" in r.json()
    assert (await proxy.http.get("/v1/conversations/bad%20id")).status_code == 404
    assert (await proxy.http.patch("/v1/conversations/nope", json={"display_name": "x"})
            ).status_code == 404


async def test_a_search_with_nul_characters_is_an_answer_not_a_500(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    # FTS5 ends a quoted string at a NUL: ?q=%00 was a 500 "unterminated string"
    # (found by tests/proxy/test_fuzz.py).
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    await _chat(proxy, "otters-1", [{"role": "user", "content": "Tell me about otters"}])
    await proxy.runtime.recorder.flush()
    for q in ("\0", "otters\0", "\0otters\0\0"):
        r = await proxy.http.get("/v1/conversations", params={"q": q})
        assert r.status_code == 200, (q, r.text)
        # a NUL is a space: "\0" alone is no search, the whole list
        assert [c["id"] for c in r.json()["data"]] == ["otters-1"], q
