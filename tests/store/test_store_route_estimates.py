"""What scheduling stores (migration 0006): a request's estimate and the reason for its
provider, and a key's local-only scope and own spill deadline. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from lai.store.db import Store
from lai.store.keylookup import lookup_key
from lai.store.keys import create_key, list_keys, rotate_key, update_key
from lai.store.keyvalues import LOCAL_ONLY, hash_key
from lai.store.recorder import Recorder
from lai.store.requests import get_request
from tests.store.helpers import finished


async def test_the_estimate_and_reason_are_in_the_request_row(store: Store) -> None:
    rec = Recorder(store)
    await rec.start()
    rec.observe(replace(finished(request_id="req_est"), estimate_ms=1234.5,
                        route_reason="gpu/qwen, free slot, warm, prefill 0.1s; best of 2"))
    rec.observe(finished(request_id="req_fifo"))
    await rec.close()
    row = get_request(store, "req_est")
    assert row is not None and row.estimate_ms == 1234.5
    assert row.route_reason == "gpu/qwen, free slot, warm, prefill 0.1s; best of 2"
    fifo = get_request(store, "req_fifo")
    assert fifo is not None and fifo.estimate_ms is None and fifo.route_reason is None


def test_local_only_and_spill_after_are_kept_updated_and_rotated(store: Store) -> None:
    issued = create_key(store, "home", scopes=[LOCAL_ONLY], spill_after=5.0)
    assert issued.record.scopes == (LOCAL_ONLY,) and issued.record.spill_after == 5.0
    info = lookup_key(store, hash_key(issued.raw_key)).info
    assert info is not None and info.has_scope(LOCAL_ONLY) and info.spill_after == 5.0
    (updated,) = update_key(store, "home", local_only=False, spill_after=None)
    assert updated.scopes == () and updated.spill_after is None
    (updated,) = update_key(store, "home", local_only=True, spill_after=12.0)
    assert updated.scopes == (LOCAL_ONLY,) and updated.spill_after == 12.0
    new = rotate_key(store, "home", grace=timedelta(hours=1)).record
    assert new.scopes == (LOCAL_ONLY,) and new.spill_after == 12.0
    assert [r.spill_after for r in list_keys(store)] == [12.0, 12.0]
    assert list_keys(store)[0].to_dict(new.created_at)["spill_after"] == 12.0


def test_a_negative_spill_after_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="spill-after"):
        create_key(store, "bad", spill_after=-1.0)
