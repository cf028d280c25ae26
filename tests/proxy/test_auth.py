"""`lai_` keys through the real proxy: who gets in, who gets 401/403, the admin socket,
rotation and revocation as a running proxy sees them, and agent keys jumping the queue."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from lai.engine.clock import SystemClock
from lai.proxy.app import create_app
from lai.proxy.auth import over_unix_socket, presented_key
from lai.runtime import build_runtime
from lai.store.db import Store, open_store
from lai.store.keys import create_key, list_keys, revoke_keys, rotate_key
from lai.store.keyservice import CACHE_TTL
from lai.store.models import RequestRecord
from tests.fakes.upstream import Behaviour
from tests.harness import make_settings, model, provider

CHAT = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}


class ShiftClock(SystemClock):
    """The real clock, moved forward on demand (for expiry, grace and the key cache)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Store]:
    """The proxy's database (harness: tmp_path/lai.db), migrated, to create keys in."""
    store = open_store(f"sqlite:///{tmp_path / 'lai.db'}")
    store.upgrade()
    yield store
    store.dispose()


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def assert_error(r: httpx.Response, status: int, type_: str, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == type_
    if code is not None:
        assert err["code"] == code
    assert set(err) == {"message", "type", "code", "param"}
    return str(err["message"])


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_every_bad_key_gets_401_invalid_api_key(proxy_factory, upstream, keys) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    revoked = create_key(keys, "revoked")
    revoke_keys(keys, "revoked")
    expired = create_key(keys, "expired", expires_in=timedelta(hours=1), now=past)
    old = create_key(keys, "rotated", now=past)
    rotate_key(keys, "rotated", grace=timedelta(hours=1), now=past)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    unknown = "lai_" + "0" * 32
    cases = [
        ({}, "Missing API key"),
        ({"Authorization": ""}, "Missing API key"),
        (bearer("sk-proj-not-a-lai-key"), "Invalid API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Invalid API key"),
        (bearer(unknown), "Unknown API key lai_0000"),
        (bearer(revoked.raw_key), "has been revoked"),
        (bearer(expired.raw_key), "expired at"),
        (bearer(old.raw_key), "was rotated and stopped working"),
    ]
    for headers, message in cases:
        for method, path, body in (("POST", "/v1/chat/completions", CHAT),
                                   ("GET", "/v1/models", None)):
            r = await proxy.http.request(method, path, json=body, headers=headers)
            text = assert_error(r, 401, "authentication_error", "invalid_api_key")
            assert message in text, (headers, text)
            for raw in (unknown, revoked.raw_key, expired.raw_key, old.raw_key):
                assert raw[8:] not in r.text
    assert [r for r in upstream.requests if "chat" in r.path] == []


async def test_a_key_is_accepted_as_bearer_bare_or_x_api_key(
    proxy_factory, upstream, keys
) -> None:
    issued = create_key(keys, "laptop")
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    for headers in (
        bearer(issued.raw_key),
        {"Authorization": f"bearer   {issued.raw_key}"},
        {"Authorization": issued.raw_key},
        {"x-api-key": issued.raw_key},
        # An SDK placeholder in one header does not hide the key in the other.
        {"Authorization": "Bearer sk-placeholder", "x-api-key": issued.raw_key},
    ):
        r = await proxy.http.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    # The upstream never sees the client's key.
    for seen in upstream.requests:
        assert issued.raw_key not in str(seen.headers)


async def test_a_key_limited_to_models_gets_403_for_others(proxy_factory, upstream, keys) -> None:
    issued = create_key(keys, "narrow", models=["small"])
    proxy = await proxy_factory(
        [provider("box", upstream.url)], [model("small", "box"), model("big", "box")], auth=True
    )
    ok = await proxy.http.post("/v1/chat/completions", json=CHAT, headers=bearer(issued.raw_key))
    assert ok.status_code == 200
    r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "model": "big"},
                              headers=bearer(issued.raw_key))
    assert_error(r, 403, "permission_error")
    listed = await proxy.http.get("/v1/models", headers=bearer(issued.raw_key))
    assert [m["id"] for m in listed.json()["data"]] == ["auto", "small"]  # only its models


async def test_health_is_open_and_metrics_open_unless_metrics_auth(
    proxy_factory, upstream, keys
) -> None:
    issued = create_key(keys, "laptop")
    proxies = [
        await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                            auth=True),
        await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                            auth=True, metrics_auth=True),
    ]
    for p in proxies:
        assert (await p.http.get("/health")).status_code == 200
    assert (await proxies[0].http.get("/metrics")).status_code != 401
    assert_error(await proxies[1].http.get("/metrics"), 401, "authentication_error")
    r = await proxies[1].http.get("/metrics", headers=bearer(issued.raw_key))
    assert r.status_code != 401


async def test_admin_over_tcp_needs_a_key_with_scope_admin(proxy_factory, upstream, keys) -> None:
    user = create_key(keys, "laptop")
    admin = create_key(keys, "ops", scopes=["admin"])
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    path = "/admin/providers/box/disable"
    assert_error(await proxy.http.post(path), 401, "authentication_error", "invalid_api_key")
    text = assert_error(await proxy.http.post(path, headers=bearer(user.raw_key)), 403,
                        "permission_error")
    assert "scope 'admin'" in text and "laptop" in text
    # Odd spellings of an admin path do not slip past the scope check.
    for odd in ("//admin/providers/box/disable", "/admin//providers/box/disable",
                "/%61dmin/providers/box/disable"):
        r = await proxy.http.post(odd, headers=bearer(user.raw_key))
        assert r.status_code in (403, 404, 405, 308), (odd, r.status_code)
        assert proxy.engine.provider("box").enabled
    r = await proxy.http.post(path, headers=bearer(admin.raw_key))
    assert r.status_code == 200 and r.json()["enabled"] is False
    # Closed by default: a path nobody listed needs a key before it can be a 404.
    assert_error(await proxy.http.get("/nope"), 401, "authentication_error")
    assert (await proxy.http.get("/nope", headers=bearer(user.raw_key))).status_code == 404


async def test_the_admin_socket_is_0600_and_needs_no_key(proxy_factory, upstream, keys) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True, admin_socket=True)
    path = proxy.socket_path
    assert path is not None and path.name == "lai.sock"
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    assert_error(await proxy.http.post("/admin/providers/box/disable"), 401,
                 "authentication_error", "invalid_api_key")
    assert proxy.engine.provider("box").enabled

    transport = httpx.AsyncHTTPTransport(uds=str(path))
    async with httpx.AsyncClient(transport=transport, base_url="http://lai") as local:
        r = await local.post("/admin/providers/box/disable")
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is False
        assert not proxy.engine.provider("box").enabled
        r = await local.post("/admin/providers/box/enable")
        assert r.status_code == 200 and r.json()["enabled"] is True
        # The whole socket is trusted, /v1 included; a key sent over it is still checked.
        assert (await local.get("/v1/models")).status_code == 200
        assert_error(await local.get("/v1/models", headers=bearer("lai_" + "1" * 32)), 401,
                     "authentication_error")


async def test_auth_off_opens_everything_and_ignores_authorization(
    proxy_factory, upstream
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=False)
    assert proxy.runtime.keys is None
    for headers in ({}, bearer("lai_" + "0" * 32), {"Authorization": "garbage"}):
        r = await proxy.http.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 200, r.text
        r = await proxy.http.post("/admin/providers/box/check", headers=headers)
        assert r.status_code == 200, r.text


async def test_a_rotated_key_works_during_grace_and_fails_after(
    proxy_factory, upstream, keys
) -> None:
    clock = ShiftClock()
    issued = create_key(keys, "laptop", scopes=["admin"], priority=0)
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True, runtime_kwargs={"clock": clock})
    assert (await proxy.http.get("/v1/models", headers=bearer(issued.raw_key))).status_code == 200

    new = await asyncio.to_thread(rotate_key, keys, "laptop", grace=timedelta(hours=1))
    assert new.record.scopes == ("admin",) and new.record.priority == 0
    for raw in (issued.raw_key, new.raw_key):
        r = await proxy.http.get("/v1/models", headers=bearer(raw))
        assert r.status_code == 200
    clock.offset = 3601  # the grace period is over; nobody did anything
    r = await proxy.http.get("/v1/models", headers=bearer(issued.raw_key))
    assert "was rotated" in assert_error(r, 401, "authentication_error", "invalid_api_key")
    r = await proxy.http.post("/admin/providers/box/check", headers=bearer(new.raw_key))
    assert r.status_code == 200


async def test_a_revoked_key_fails_within_the_documented_delay(
    proxy_factory, upstream, keys
) -> None:
    clock = ShiftClock()
    issued = create_key(keys, "laptop")
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True, runtime_kwargs={"clock": clock})
    assert (await proxy.http.get("/v1/models", headers=bearer(issued.raw_key))).status_code == 200
    await asyncio.to_thread(revoke_keys, keys, "laptop")  # as `lai keys revoke` does
    clock.offset = CACHE_TTL + 0.1
    r = await proxy.http.get("/v1/models", headers=bearer(issued.raw_key))
    assert "revoked" in assert_error(r, 401, "authentication_error", "invalid_api_key")


async def test_an_agent_key_is_served_before_queued_priority_1_requests(
    proxy_factory, upstream, keys
) -> None:
    upstream.default = Behaviour(delay=0.15)
    user = create_key(keys, "laptop")
    agent = create_key(keys, "agent-ci")
    assert agent.record.priority == 0
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=1)],
                                [model("small", "box")], auth=True, queue_timeout=20)
    slots = proxy.engine.slots

    def ask(raw: str, text: str) -> asyncio.Task[httpx.Response]:
        body = {"model": "small", "messages": [{"role": "user", "content": text}]}
        return asyncio.create_task(
            proxy.http.post("/v1/chat/completions", json=body, headers=bearer(raw)))

    tasks = [ask(user.raw_key, "first")]
    await until(lambda: slots.in_flight["box"] == 1)
    for i in range(3):
        tasks.append(ask(user.raw_key, f"user-{i}"))
        await until(lambda n=i + 1: slots.queue_depth == n)
    tasks.append(ask(agent.raw_key, "agent"))
    await until(lambda: slots.queue_depth == 4)
    for r in await asyncio.gather(*tasks):
        assert r.status_code == 200, r.text
    served = [r.body["messages"][-1]["content"] for r in upstream.requests if "chat" in r.path]
    assert served == ["first", "agent", "user-0", "user-1", "user-2"]


async def test_key_material_is_never_recorded_or_logged(
    proxy_factory, upstream, keys, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    good = create_key(keys, "laptop")
    revoked = create_key(keys, "gone")
    revoke_keys(keys, "gone")
    unknown = "lai_" + "e" * 32
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True)
    for stream in (False, True):
        r = await proxy.http.post("/v1/chat/completions", json={**CHAT, "stream": stream},
                                  headers=bearer(good.raw_key))
        assert r.status_code == 200
    for raw in (revoked.raw_key, unknown):
        r = await proxy.http.post("/v1/chat/completions", json=CHAT, headers=bearer(raw))
        assert r.status_code == 401
    r = await proxy.http.post("/admin/providers/box/check", headers=bearer(good.raw_key))
    assert r.status_code == 403
    await proxy.stop()  # flushes the recorder and last_used_at

    with keys.session() as session:
        rows = session.exec(select(RequestRecord)).all()
    assert len(rows) == 2
    assert {(r.key_name, r.key_prefix) for r in rows} == {("laptop", good.raw_key[:8])}
    secrets_ = [k[8:] for k in (good.raw_key, revoked.raw_key, unknown)]
    for row in rows:
        assert not any(s in str(v) for s in secrets_ for v in row.model_dump().values())
    for f in tmp_path.glob("lai.db*"):
        data = f.read_bytes()
        assert not any(s.encode() in data for s in secrets_), f
    assert caplog.records, "expected some log lines to check"
    assert not any(s in caplog.text for s in secrets_)
    assert "gone" in caplog.text  # refusals are logged, by name and prefix
    # And last_used_at was written at shutdown, in one batch.
    used = {k.name: k.last_used_at for k in list_keys(keys)}
    assert used["laptop"] is not None and used["gone"] is None


@pytest.mark.parametrize(
    ("scope", "local"),
    [
        ({"server": None, "client": None}, True),  # Hypercorn on a unix socket
        ({"server": ("/run/lai.sock", None), "client": None}, True),  # uvicorn's form
        ({"server": ("127.0.0.1", 8012), "client": ("127.0.0.1", 50000)}, False),
        ({"server": None, "client": ("10.0.0.2", 50000)}, False),
        ({}, False),  # Quart's test client leaves the keys out: a key is required
    ],
)
def test_unix_socket_detection_fails_closed(scope: dict, local: bool) -> None:
    assert over_unix_socket(scope) is local


def test_presented_key_forms() -> None:
    raw = "lai_" + "a" * 32
    assert presented_key({"Authorization": f"Bearer {raw}"}) == raw
    assert presented_key({"Authorization": f"  {raw} "}) == raw
    assert presented_key({"x-api-key": raw}) == raw
    assert presented_key({"Authorization": "Bearer sk-x", "x-api-key": raw}) == raw
    assert presented_key({"Authorization": "Bearer sk-x"}) == "sk-x"
    assert presented_key({"Authorization": "Bearer "}) is None
    assert presented_key({}) is None


async def test_in_process_test_client_still_needs_a_key(tmp_path, keys) -> None:
    issued = create_key(keys, "laptop")
    settings = make_settings(tmp_path, [provider("box", "http://127.0.0.1:9")],
                             [model("small", "box")], auth=True)
    app = create_app(build_runtime(settings))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        r = await client.get("/v1/models")
        assert r.status_code == 401
        r = await client.get("/v1/models", headers=bearer(issued.raw_key))
        assert r.status_code == 200


async def test_usage_by_key_needs_admin(proxy_factory, upstream, keys) -> None:
    plain = create_key(keys, "laptop")
    admin = create_key(keys, "ops", scopes=["admin"])
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                auth=True, admin_socket=True)
    by_key = {"by": "key"}
    r = await proxy.http.get("/v1/stats", params=by_key, headers=bearer(plain.raw_key))
    assert "admin" in assert_error(r, 403, "permission_error")
    ok = await proxy.http.get("/v1/stats", params={"by": "model"},
                              headers=bearer(plain.raw_key))
    assert ok.status_code == 200  # other groupings stay open to any key
    r = await proxy.http.get("/v1/stats", params=by_key, headers=bearer(admin.raw_key))
    assert r.status_code == 200 and r.json()["by"] == "key"
    transport = httpx.AsyncHTTPTransport(uds=str(proxy.socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://lai") as local:
        assert (await local.get("/v1/stats", params=by_key)).status_code == 200
