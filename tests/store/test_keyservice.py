"""The proxy's KeyService: cached verification, batched ``last_used_at`` writes, and what
it does when the database is down. Every test runs on SQLite and PostgreSQL (the
``store`` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from lai.errors import AuthenticationFailed, ServiceUnavailable
from lai.store import keyservice
from lai.store.db import Store
from lai.store.keys import create_key, list_keys, revoke_keys
from lai.store.keyservice import KeyService

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """Wall and monotonic time that only move when told to."""

    def __init__(self, wall: datetime = T0) -> None:
        self.wall = wall.timestamp()
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


async def test_service_caches_and_sees_a_revocation_after_the_ttl(store: Store) -> None:
    clock = FakeClock()
    service = KeyService(store, clock=clock, cache_ttl=5.0)
    issued = create_key(store, "laptop", now=T0)
    assert (await service.verify(issued.raw_key)).name == "laptop"
    for _ in range(20):
        await service.verify(issued.raw_key)
    assert service.lookups == 1

    await asyncio.to_thread(revoke_keys, store, "laptop")
    clock.advance(4.9)
    await service.verify(issued.raw_key)  # still cached: within the documented delay
    clock.advance(0.2)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await service.verify(issued.raw_key)
    assert service.lookups == 2


async def test_service_judges_expiry_on_every_request(store: Store) -> None:
    clock = FakeClock()
    service = KeyService(store, clock=clock, cache_ttl=3600)
    issued = create_key(store, "brief", expires_in=timedelta(seconds=10), now=T0)
    await service.verify(issued.raw_key)
    clock.advance(10)
    with pytest.raises(AuthenticationFailed, match="expired"):
        await service.verify(issued.raw_key)
    assert service.lookups == 1


async def test_service_caches_unknown_keys_and_invalidate_forgets(store: Store) -> None:
    clock = FakeClock()
    service = KeyService(store, clock=clock)
    raw = "lai_" + "0" * 32
    for _ in range(3):
        with pytest.raises(AuthenticationFailed, match="Unknown"):
            await service.verify(raw)
    assert service.lookups == 1
    with pytest.raises(AuthenticationFailed, match="Missing"):
        await service.verify(None)
    with pytest.raises(AuthenticationFailed, match="Invalid"):
        await service.verify("Bearer")
    assert service.lookups == 1
    service.invalidate()
    with pytest.raises(AuthenticationFailed):
        await service.verify(raw)
    assert service.lookups == 2


async def test_a_burst_of_first_requests_costs_one_lookup(store: Store) -> None:
    service = KeyService(store, clock=FakeClock())
    issued = create_key(store, "laptop")
    infos = await asyncio.gather(*(service.verify(issued.raw_key) for _ in range(30)))
    assert {i.name for i in infos} == {"laptop"} and service.lookups == 1


async def test_last_used_is_batched_and_flushed_at_close(store: Store) -> None:
    clock = FakeClock()
    service = KeyService(store, clock=clock, flush_interval=3600)
    a = create_key(store, "a")
    b = create_key(store, "b")
    await service.start()
    for _ in range(10):
        await service.verify(a.raw_key)
        await service.verify(b.raw_key)
    assert service.pending_uses == 2
    assert all(r.last_used_at is None for r in list_keys(store))  # nothing written per request
    await service.close()
    assert service.pending_uses == 0 and service.flushes == 1
    used = {r.name: r.last_used_at for r in list_keys(store)}
    assert used == {"a": T0, "b": T0}


async def test_last_used_flushes_periodically(store: Store) -> None:
    service = KeyService(store, clock=FakeClock(), flush_interval=0.05)
    issued = create_key(store, "a")
    await service.start()
    try:
        await service.verify(issued.raw_key)
        for _ in range(250):
            if service.flushes:
                break
            await asyncio.sleep(0.02)
        assert list_keys(store)[0].last_used_at == T0
    finally:
        await service.close()


async def test_database_down_keeps_known_keys_and_answers_503_for_new_ones(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    service = KeyService(store, clock=clock)
    issued = create_key(store, "laptop")
    await service.verify(issued.raw_key)

    def down(*_args: object) -> None:
        raise OperationalError("SELECT", {}, Exception("database is down"))

    monkeypatch.setattr(keyservice, "lookup_key", down)
    monkeypatch.setattr(keyservice, "touch_last_used", down)
    clock.advance(60)
    assert (await service.verify(issued.raw_key)).name == "laptop"
    with pytest.raises(ServiceUnavailable) as err:
        await service.verify("lai_" + "1" * 32)
    assert err.value.status == 503
    await service.flush()  # fails, keeps the use for later, raises nothing
    assert service.pending_uses == 1
