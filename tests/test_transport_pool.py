"""The upstream pool when it is full: a wake-up is never lost, and a pool that stays
full is lai's own 503, not a failure of the provider."""

from __future__ import annotations

import asyncio

import httpx

from lai.engine.engine import Engine
from lai.engine.types import RequestContext
from lai.errors import UpstreamPoolExhausted
from lai.transport import PoolTransport
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import make_settings, model, provider

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def one_connection_client(pool: float) -> httpx.AsyncClient:
    transport = PoolTransport(limits=httpx.Limits(max_connections=1))
    return httpx.AsyncClient(transport=transport, trust_env=False,
                             timeout=httpx.Timeout(5.0, pool=pool))


async def test_a_waiter_cancelled_as_it_is_woken_passes_the_connection_on(upstream):
    upstream.default = Behaviour(chunks=2)
    async with one_connection_client(pool=2.0) as client:
        url = f"{upstream.url}/v1/chat/completions"
        holder = await client.send(client.build_request("POST", url, json=BODY), stream=True)
        first = asyncio.create_task(client.post(url, json=BODY))
        second = asyncio.create_task(client.post(url, json=BODY))
        await asyncio.sleep(0.05)  # both wait for the one connection, ``first`` in front
        assert not first.done() and not second.done()
        # The connection comes free and ``first`` is woken; before it runs, its client
        # gives up. The wake-up must go on to ``second``, not be lost with ``first``.
        await holder.aclose()
        first.cancel()
        r = await second
        assert r.status_code == 200
        assert first.cancelled()


async def test_a_full_pool_is_503_upstream_pool_exhausted_and_not_the_providers_fault(
        tmp_path, caplog):
    with FakeUpstream() as fake:
        fake.default = Behaviour(mode="hang")
        settings = make_settings(tmp_path, [provider("box", fake.url, max_concurrent=4)],
                                 [model("m", "box")])
        async with one_connection_client(pool=0.2) as client:
            engine = Engine(settings, client, pool_timeout=0.2)
            # Something else holds the pool's only connection.
            hold = asyncio.create_task(client.post(f"{fake.url}/v1/chat/completions",
                                                   json=BODY))
            await fake.wait_for_async(lambda: fake.in_flight == 1)
            for call in (engine.complete(BODY, RequestContext()),
                         engine.stream({**BODY, "stream": True}, RequestContext())):
                try:
                    await call
                except UpstreamPoolExhausted as exc:
                    err = exc
                else:
                    raise AssertionError("no error with the pool full")
                assert err.status == 503
                assert err.to_dict()["error"]["type"] == "service_unavailable"
                assert err.to_dict()["error"]["code"] == "upstream_pool_exhausted"
                assert err.headers() == {"Retry-After": "1"}
            state = engine.provider("box")
            assert state.consecutive_failures == 0 and state.last_error is None
            assert state.active_requests == 0
            assert "connection pool is full" in caplog.text
            hold.cancel()
