"""Stored Responses answers on SQLite and PostgreSQL: the repository, and the
store / previous_response_id / GET round trip through the proxy."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from lai.errors import ServiceUnavailable
from lai.store.db import Store, open_store
from lai.store.keys import create_key
from lai.store.responses import delete_response, get_response, save_response
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider


def test_a_saved_response_is_read_back_only_by_its_key_or_an_admin(store: Store) -> None:
    body = {"id": "resp_1", "object": "response", "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "é"}]}]}
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "é"}]
    save_response(store, response_id="resp_1", request_id="req_1", key_name="laptop",
                  conversation_id="conv_1", previous_response_id=None, body=body,
                  history=history)
    row = get_response(store, "resp_1", key_name="laptop")
    assert row is not None
    assert (row.body, row.history, row.conversation_id) == (body, history, "conv_1")
    assert get_response(store, "resp_1", key_name="other") is None
    assert get_response(store, "resp_1", key_name="other", admin=True) is not None
    assert get_response(store, "resp_missing", key_name="laptop") is None
    assert not delete_response(store, "resp_1", key_name="other")
    assert delete_response(store, "resp_1", key_name="laptop")
    assert get_response(store, "resp_1", key_name="laptop") is None


async def test_previous_response_id_continues_a_stored_response(
    proxy_factory: Any, upstream: FakeUpstream, store_url: str
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                database_url=store_url)
    upstream.script(Behaviour(content="Paris."), Behaviour(content="About two million."))
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x",
                                  max_retries=0) as client:
        first = await client.responses.create(model="small", input="Capital of France?",
                                              instructions="Answer briefly.")
        again = await client.responses.retrieve(first.id)
        assert again.output_text == "Paris." and again.id == first.id
        async with client.responses.stream(model="small", input="Its population?",
                                           previous_response_id=first.id) as stream:
            async for _ in stream:
                pass
            second = await stream.get_final_response()
        assert second.previous_response_id == first.id
        assert (await client.responses.retrieve(second.id)).output_text == "About two million."
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"},
    ]


async def test_a_response_of_another_key_is_not_found(
    proxy_factory: Any, upstream: FakeUpstream
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    mine = create_key(proxy.runtime.store, "mine").raw_key
    theirs = create_key(proxy.runtime.store, "theirs").raw_key
    r = await proxy.http.post("/v1/responses", json={"model": "small", "input": "secret"},
                              headers={"Authorization": f"Bearer {mine}"})
    assert r.status_code == 200
    rid = r.json()["id"]
    ok = await proxy.http.get(f"/v1/responses/{rid}", headers={"Authorization": f"Bearer {mine}"})
    assert ok.status_code == 200
    other = await proxy.http.get(f"/v1/responses/{rid}",
                                 headers={"Authorization": f"Bearer {theirs}"})
    assert other.status_code == 404
    cont = await proxy.http.post("/v1/responses", json={
        "model": "small", "input": "more", "previous_response_id": rid},
        headers={"Authorization": f"Bearer {theirs}"})
    assert cont.status_code == 404 and cont.json()["error"]["param"] == "previous_response_id"


def test_an_unreachable_database_is_service_unavailable_not_a_crash() -> None:
    store = open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(ServiceUnavailable) as err:
            get_response(store, "resp_1", key_name=None)
        assert err.value.code == "store_unavailable"
    finally:
        store.dispose()
