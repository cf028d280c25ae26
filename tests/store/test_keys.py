"""API keys in the store: issuing, finding, rotating, revoking and verifying them (the
proxy's cached KeyService is in test_keyservice.py). Every test runs on SQLite and
PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from lai.errors import AuthenticationFailed
from lai.store import keys as repo
from lai.store.db import Store
from lai.store.keylookup import touch_last_used, verify_key
from lai.store.keys import (
    AmbiguousKey,
    KeyConflict,
    KeyNotFound,
    create_key,
    delete_keys,
    enable_key,
    find_keys,
    list_keys,
    revoke_keys,
    rotate_key,
)
from lai.store.models import ApiKey

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def row(store: Store, prefix: str) -> ApiKey:
    with store.session() as session:
        found = session.exec(select(ApiKey).where(ApiKey.key_prefix == prefix)).one()
        return found


# -- issuing ----------------------------------------------------------------------------------


def test_create_stores_only_the_hash_and_prefix(store: Store) -> None:
    issued = create_key(store, "laptop")
    raw = issued.raw_key
    assert raw.startswith("lai_") and len(raw) == 36
    int(raw[4:], 16)
    r = row(store, raw[:8])
    assert r.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert r.key_prefix == raw[:8] == issued.record.prefix
    with store.session() as session:
        values = session.execute(sa.select(sa.text("*")).select_from(sa.table("api_keys"))).all()
    assert not any(raw in str(v) for rowvalues in values for v in rowvalues)


def test_keys_are_random(store: Store) -> None:
    a, b = create_key(store, "a").raw_key, create_key(store, "b").raw_key
    assert a != b


def test_default_priority_is_0_for_agents_and_1_otherwise_unless_given(store: Store) -> None:
    assert create_key(store, "agent-ci").record.priority == 0
    assert create_key(store, "laptop").record.priority == 1
    assert create_key(store, "agent-slow", priority=1).record.priority == 1
    assert create_key(store, "editor", priority=0).record.priority == 0


def test_create_keeps_scopes_models_and_expiry(store: Store) -> None:
    rec = create_key(store, "ops", scopes=["admin", "ADMIN"], models=["small", " box/big "],
                     expires_in=timedelta(days=30), now=T0).record
    assert rec.scopes == ("admin",)
    assert rec.models == ("small", "box/big")
    assert rec.expires_at == T0 + timedelta(days=30)
    assert rec.status(T0) == "active"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "invalid key name"),
        ({"name": "lai_5f4d"}, "invalid key name"),
        ({"name": ""}, "invalid key name"),
        ({"name": "x", "scopes": ["root"]}, "unknown scope 'root'"),
        ({"name": "x", "priority": 5}, "invalid priority 5"),
        ({"name": "x", "models": [" ", ""]}, "at least one model"),
        ({"name": "x", "expires_in": timedelta(0)}, "longer than 0"),
    ],
)
def test_create_refuses_bad_input(store: Store, kwargs: dict, message: str) -> None:
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        create_key(store, name, **kwargs)
    assert list_keys(store) == []


def test_a_name_is_given_once(store: Store) -> None:
    first = create_key(store, "laptop").record
    with pytest.raises(KeyConflict, match=f"exists already \\({first.prefix}\\)"):
        create_key(store, "laptop")


# -- finding ----------------------------------------------------------------------------------


def fixed_keys(monkeypatch: pytest.MonkeyPatch, *keys: str) -> None:
    it = iter(keys)
    monkeypatch.setattr(repo, "generate_key", lambda: next(it))


def test_find_by_name_prefix_or_whole_key(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_keys(monkeypatch, "lai_aaaa" + "0" * 28, "lai_aaaa" + "1" * 28, "lai_bbbb" + "2" * 28)
    create_key(store, "one")
    create_key(store, "two")
    create_key(store, "three")
    assert [r.name for r in find_keys(store, "two")] == ["two"]
    assert [r.name for r in find_keys(store, "lai_bbbb")] == ["three"]
    assert [r.name for r in find_keys(store, "lai_bb")] == ["three"]
    assert [r.name for r in find_keys(store, "lai_aaaa" + "1" * 28)] == ["two"]
    with pytest.raises(AmbiguousKey) as err:
        find_keys(store, "lai_aaaa")
    assert {m.name for m in err.value.matches} == {"one", "two"}
    assert "lai_aaaa (one, active)" in err.value.message
    assert "lai_aaaa (two, active)" in err.value.message
    with pytest.raises(KeyNotFound):
        find_keys(store, "nobody")
    with pytest.raises(KeyNotFound):
        find_keys(store, "lai_cccc")


def test_prefix_match_treats_underscore_literally(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "lai_" holds a LIKE wildcard; a prefix search must not match "laiX...".
    fixed_keys(monkeypatch, "lai_abcd" + "0" * 28)
    create_key(store, "one")
    with store.write_session() as session:
        session.execute(sa.update(ApiKey).values(key_prefix="laiXabcd"))
    with pytest.raises(KeyNotFound):
        find_keys(store, "lai_abcd")


# -- verifying --------------------------------------------------------------------------------


def test_verify_accepts_a_key_and_refuses_each_bad_case_distinctly(store: Store) -> None:
    good = create_key(store, "agent-ci", models=["small"], scopes=["admin"], now=T0)
    info = verify_key(store, good.raw_key, now=T0)
    assert (info.name, info.prefix, info.priority) == ("agent-ci", good.raw_key[:8], 0)
    assert info.models == ("small",) and info.has_scope("admin")

    revoked = create_key(store, "old", now=T0)
    revoke_keys(store, "old", now=T0)
    expired = create_key(store, "brief", expires_in=timedelta(hours=1), now=T0)
    unknown = "lai_" + "f" * 32
    cases = {
        None: "Missing API key",
        "": "Missing API key",
        "sk-proj-abcdef": "Invalid API key",
        "lai_123": "Invalid API key",
        unknown: "Unknown API key lai_ffff",
        revoked.raw_key: "has been revoked",
        expired.raw_key: "expired at 2030-01-01 13:00 UTC",
    }
    later = T0 + timedelta(hours=2)
    for raw, message in cases.items():
        with pytest.raises(AuthenticationFailed) as err:
            verify_key(store, raw, now=later)
        assert message in err.value.message
        assert err.value.status == 401 and err.value.code == "invalid_api_key"
        if raw and len(raw) > 8:
            assert raw[8:] not in err.value.message


def test_rotation_keeps_everything_but_the_secret(store: Store) -> None:
    old = create_key(store, "laptop", scopes=["admin"], priority=0, models=["a", "b"],
                     expires_in=timedelta(days=30), now=T0)
    rotated_at = T0 + timedelta(days=10)
    new = rotate_key(store, "laptop", grace=timedelta(hours=24), now=rotated_at)
    assert new.raw_key != old.raw_key
    n, o = new.record, new.replaced
    assert o is not None
    assert (n.name, n.scopes, n.priority, n.models) == ("laptop", ("admin",), 0, ("a", "b"))
    assert n.rotated_from == o.id and n.rotated_from_prefix == o.prefix
    assert o.replaced_by == n.id and o.replaced_by_prefix == n.prefix
    assert o.grace_until == rotated_at + timedelta(hours=24)
    assert n.expires_at == rotated_at + timedelta(days=30)  # the same lifetime, from now

    # During grace both work; afterwards only the new one, with no further action.
    during = rotated_at + timedelta(hours=23)
    assert verify_key(store, old.raw_key, now=during).id == o.id
    assert verify_key(store, new.raw_key, now=during).id == n.id
    after = rotated_at + timedelta(hours=24, seconds=1)
    with pytest.raises(AuthenticationFailed, match="was rotated and stopped working"):
        verify_key(store, old.raw_key, now=after)
    assert verify_key(store, new.raw_key, now=after).id == n.id

    listed = {r.prefix: r for r in list_keys(store)}
    assert listed[o.prefix].status_text(during).startswith("grace until 2030-01-12 12:00")
    assert listed[o.prefix].status(after) == "rotated"
    assert listed[o.prefix].replaced_by_prefix == n.prefix
    assert listed[n.prefix].status(after) == "active"


def test_rotate_by_name_picks_the_current_key_and_refuses_odd_states(store: Store) -> None:
    first = create_key(store, "laptop", now=T0)
    second = rotate_key(store, "laptop", grace=timedelta(hours=1), now=T0)
    third = rotate_key(store, "laptop", grace=timedelta(hours=1), now=T0)
    assert third.replaced is not None and third.replaced.id == second.record.id
    with pytest.raises(KeyConflict, match="rotated already"):
        rotate_key(store, first.record.prefix, grace=timedelta(0), now=T0)
    revoke_keys(store, third.record.prefix, now=T0)
    with pytest.raises(KeyConflict, match="is revoked"):
        rotate_key(store, "laptop", grace=timedelta(0), now=T0)
    with pytest.raises(ValueError, match="negative"):
        rotate_key(store, "laptop", grace=timedelta(seconds=-1), now=T0)


def test_revoke_by_name_stops_the_key_in_grace_too_and_enable_restores(store: Store) -> None:
    old = create_key(store, "laptop", now=T0)
    new = rotate_key(store, "laptop", grace=timedelta(days=1), now=T0)
    revoked = revoke_keys(store, "laptop", now=T0)
    assert {r.prefix for r in revoked} == {old.record.prefix, new.record.prefix}
    assert all(r.status(T0) == "revoked" and r.revoked_at == T0 for r in revoked)
    for raw in (old.raw_key, new.raw_key):
        with pytest.raises(AuthenticationFailed, match="revoked"):
            verify_key(store, raw, now=T0)
    enabled = enable_key(store, "laptop", now=T0)
    assert enabled.prefix == new.record.prefix and enabled.revoked_at is None
    assert verify_key(store, new.raw_key, now=T0).name == "laptop"
    with pytest.raises(AuthenticationFailed):
        verify_key(store, old.raw_key, now=T0)  # by name, only the current key is enabled


def test_delete_an_old_key_keeps_its_successor_and_delete_by_name_removes_all(
    store: Store,
) -> None:
    old = create_key(store, "laptop", now=T0)
    new = rotate_key(store, "laptop", grace=timedelta(days=1), now=T0)
    create_key(store, "other", now=T0)
    deleted = delete_keys(store, old.record.prefix)
    assert [d.prefix for d in deleted] == [old.record.prefix]
    (survivor,) = find_keys(store, "laptop")
    assert survivor.prefix == new.record.prefix and survivor.rotated_from is None
    assert verify_key(store, new.raw_key, now=T0).name == "laptop"
    delete_keys(store, "laptop")
    assert [r.name for r in list_keys(store)] == ["other"]
    with pytest.raises(AuthenticationFailed, match="Unknown API key"):
        verify_key(store, new.raw_key, now=T0)


def test_touch_last_used_is_one_update(store: Store) -> None:
    a = create_key(store, "a").record
    b = create_key(store, "b").record
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        touch_last_used(store, {a.id: T0, b.id: T0 + timedelta(seconds=5), 999: T0})
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
    used = {r.name: r.last_used_at for r in list_keys(store)}
    assert used == {"a": T0, "b": T0 + timedelta(seconds=5)}
