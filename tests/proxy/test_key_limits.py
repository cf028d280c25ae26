"""A key's own caps and a model's cap through the real proxy: --max-concurrent holds a
key to N requests in flight over every provider, --max-queued refuses one more with 429
and Retry-After, a model's max_concurrent caps it on a multi-model server, and the
fair queue lets a person through while a batch key waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from lai.store.db import Store, open_store
from lai.store.keyquota import KeyQuota
from lai.store.keys import create_key
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    yield store
    store.dispose()


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def client(url: str, raw: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=raw, max_retries=0,
                              http_client=httpx.AsyncClient(trust_env=False))


def ask(c: openai.AsyncOpenAI, text: str, model_id: str = "small") -> asyncio.Task[object]:
    return asyncio.create_task(c.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": text}]))


async def test_a_keys_max_concurrent_and_max_queued_hold_over_every_provider(
        proxy_factory, upstream_factory, keys) -> None:
    a, b = upstream_factory(), upstream_factory()
    for up in (a, b):
        up.default = Behaviour(delay=0.3)
    batch = create_key(keys, "batch", quota=KeyQuota(max_concurrent=1, max_queued=1))
    person = create_key(keys, "alice")
    proxy = await proxy_factory(
        [provider("a", a.url, max_concurrent=4), provider("b", b.url, max_concurrent=4)],
        [model("small", "a", fallbacks=["other"]), model("other", "b")],
        auth=True, queue_timeout=10)
    slots = proxy.engine.slots
    batch_client, person_client = client(proxy.url, batch.raw_key), client(proxy.url,
                                                                           person.raw_key)
    first = ask(batch_client, "b0")
    await until(lambda: a.in_flight == 1)
    second = ask(batch_client, "b1")
    await until(lambda: slots.queue_depth == 1)  # eight free slots, but not for this key
    with pytest.raises(openai.RateLimitError) as info:
        await batch_client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "b2"}])
    err = info.value
    assert err.status_code == 429
    assert err.body["code"] == "key_queue_full"  # type: ignore[index]
    assert int(err.response.headers["retry-after"]) >= 1
    # another key is not held back by the batch key's caps
    answer = await person_client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content
    await asyncio.gather(first, second)
    assert a.max_in_flight + b.max_in_flight <= 3  # b0, b1 one after the other, + alice
    served = [r.body["messages"][-1]["content"] for r in a.requests if r.body]
    assert served.index("b1") > served.index("b0")
    assert slots.key_in_flight == {} and slots.queue_depth == 0
    await batch_client.close()
    await person_client.close()


async def test_a_models_max_concurrent_caps_it_on_a_multi_model_server(
        proxy_factory, upstream, keys) -> None:
    upstream.default = Behaviour(delay=0.25)
    proxy = await proxy_factory(
        [provider("box", upstream.url, max_concurrent=4)],
        [model("big", "box", max_concurrent=1), model("small", "box")])
    c = client(proxy.url, "unused")
    bigs = [ask(c, f"big-{i}", "big") for i in range(3)]
    await until(lambda: upstream.in_flight == 1)
    await asyncio.sleep(0.05)
    small = await c.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "small"}])
    assert small.choices[0].message.content
    assert upstream.in_flight == 1  # the small one came and went; the big one still runs
    await asyncio.gather(*bigs)
    times = [r.at for r in upstream.requests
             if r.body and r.body["messages"][-1]["content"].startswith("big")]
    assert len(times) == 3
    # one big at a time: each started only after the one before had taken its 0.25 s
    assert all(later - earlier >= 0.2 for earlier, later in zip(times, times[1:], strict=False))
    assert upstream.max_in_flight == 2  # one big + the small
    await c.close()


async def test_a_person_is_served_between_a_batch_keys_queued_requests(
        proxy_factory, upstream, keys) -> None:
    upstream.script(Behaviour(delay=0.8))  # the first holds the slot while the rest queue
    upstream.default = Behaviour(delay=0.02)
    batch = create_key(keys, "batch")
    person = create_key(keys, "alice")
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("small", "box")], auth=True, queue_timeout=20)
    slots = proxy.engine.slots
    bc, pc = client(proxy.url, batch.raw_key), client(proxy.url, person.raw_key)
    tasks = [ask(bc, f"b{i}") for i in range(10)]
    await until(lambda: slots.queue_depth == 9)
    tasks.append(ask(pc, "alice"))
    await until(lambda: slots.queue_depth == 10)
    await asyncio.gather(*tasks)
    served = [r.body["messages"][-1]["content"] for r in upstream.requests if r.body]
    # one batch request in flight and at most one more ahead of her, not nine
    assert served.index("alice") <= 2
    await bc.close()
    await pc.close()
