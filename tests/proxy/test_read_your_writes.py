"""Read-your-writes: once lai answered a chat, its conversation is there to read, rename
and delete at once, although the recorder batches rows with a linger (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import model, provider
from tests.store.conftest import create_pg_database, drop_pg_database

TRIES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ryw.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


async def _chat(proxy, cid: str, text: str, *, stream: bool) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "small", "messages": [{"role": "user", "content": text}], "stream": stream}
    r = await proxy.http.post("/v1/chat/completions", json=body,
                              headers={"X-Conversation-ID": cid})
    assert r.status_code == 200, r.text


async def test_chat_then_get_patch_delete_at_once(proxy_factory, upstream, database_url):  # type: ignore[no-untyped-def]
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                database_url=database_url)
    assert proxy.runtime.recorder.linger > 0  # the batching this test is about
    found = renamed = deleted = listed = 0
    for i in range(TRIES):
        stream = i % 2 == 0
        await _chat(proxy, f"get-{i}", "hello", stream=stream)
        r = await proxy.http.get(f"/v1/conversations/get-{i}")
        found += r.status_code == 200 and len(r.json()["messages"]) == 2

        await _chat(proxy, f"patch-{i}", "hello", stream=stream)
        r = await proxy.http.patch(f"/v1/conversations/patch-{i}", json={"display_name": "x"})
        renamed += r.status_code == 200 and r.json()["display_name"] == "x"

        await _chat(proxy, f"delete-{i}", "hello", stream=stream)
        r = await proxy.http.delete(f"/v1/conversations/delete-{i}")
        deleted += r.status_code == 200

        await _chat(proxy, f"list-{i}", "hello", stream=stream)
        r = await proxy.http.get("/v1/conversations", params={"limit": 1})
        listed += [c["id"] for c in r.json()["data"]] == [f"list-{i}"]
    assert (found, renamed, deleted, listed) == (TRIES, TRIES, TRIES, TRIES)
    # Deleted ones stay deleted: nothing of theirs was still waiting to be written.
    await proxy.runtime.recorder.flush()
    assert (await proxy.http.get("/v1/conversations/delete-0")).status_code == 404


async def test_admin_flush_for_a_client_that_reads_the_store(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    # The attached TUI reads the database itself; it asks the proxy to flush first.
    from lai.store import conversations as repo

    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")])
    store = proxy.runtime.store
    found = 0
    for i in range(5):
        await _chat(proxy, f"tui-{i}", "hello", stream=True)
        r = await proxy.http.post("/admin/flush", params={"conversation_id": f"tui-{i}"})
        assert r.status_code == 200 and r.json()["flushed"] is True
        found += repo.get_conversation(store, f"tui-{i}")["id"] == f"tui-{i}"
    assert found == 5


async def test_the_attached_tui_reads_its_chat_at_once(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    from lai.store.db import open_store
    from lai.tui.attached import AttachedClient

    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                admin_socket=True)
    settings = proxy.settings
    tui = AttachedClient(settings, open_store(settings.server.database_url),
                         sock=proxy.socket_path)
    try:
        found = 0
        for i in range(10):
            body = {"model": "small", "stream": True,
                    "messages": [{"role": "user", "content": "hello"}]}
            events = [e async for e in tui.chat(body, conversation_id=f"att-{i}")]
            assert events, "the chat answered"
            conv = await tui.conversation(f"att-{i}")
            found += len(conv["messages"]) == 2
        assert found == 10
    finally:
        await tui.close()
        tui.store.dispose()
