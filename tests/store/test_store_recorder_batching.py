"""The recorder's batching: the linger under a steady load, what cuts it short, and its
own connection (both backends)."""

from __future__ import annotations

import asyncio
import time

from sqlmodel import col, select

from lai.engine.events import EventBus
from lai.store.db import Store
from lai.store.models import Conversation
from lai.store.recorder import Recorder
from lai.store.requests import count_requests
from tests.store.helpers import finished
from tests.store.test_store_recorder import _database_unavailable, _until


async def test_a_steady_load_goes_in_a_few_large_transactions(store: Store) -> None:
    # ~1,000 requests a second for ~1.5 s with a 0.3 s linger: a transaction every 0.3 s.
    # Before, the linger only followed an idle queue: once the writes took longer than
    # the gap between requests, the worker wrote what had come in during the previous
    # write, a few records each time, hundreds of transactions.
    rec = Recorder(store, linger=0.3, batch_size=100_000)
    bus = EventBus()
    rec.attach(bus)
    await rec.start()
    for i in range(1500):
        bus.emit(finished(conversation_id=f"steady-{i}"))
        if i % 2:
            await asyncio.sleep(0.001)
    await rec.close()
    assert count_requests(store) == rec.stats.written == 1500
    assert rec.stats.batches <= 15, rec.stats.batches


async def test_a_burst_larger_than_a_batch_is_written_without_waiting_between_batches(
    store: Store,
) -> None:
    rec = Recorder(store, batch_size=50, linger=30.0)
    await rec.start()
    for i in range(420):
        rec.observe(finished(conversation_id=f"burst-{i % 7}",
                             messages=[{"role": "user", "content": f"q{i}"}]))
    # Eight full batches go without a linger; the last 20 wait for it (30 s) unless
    # someone asks for them.
    await _until(lambda: rec.stats.written >= 400)
    assert await rec.settle(None, timeout=10)
    await rec.close()
    assert count_requests(store) == 420
    with store.session() as s:
        convs = s.exec(select(Conversation).order_by(col(Conversation.id))).all()
    assert [c.message_count for c in convs] == [2 * 60] * 7  # a question and an answer each


async def test_settle_and_flush_cut_the_linger_after_a_write_short(store: Store) -> None:
    # The worker lingers after a batch that was not full; a read must not wait for it.
    rec = Recorder(store, linger=60.0)
    await rec.start()
    rec.observe(finished(conversation_id="first"))
    assert await rec.settle("first", timeout=5)
    rec.observe(finished(conversation_id="second"))  # arrives while the worker lingers
    started = time.monotonic()
    assert await rec.settle("second", timeout=5)
    rec.observe(finished(conversation_id="third"))
    await asyncio.wait_for(rec.flush(), 5)
    assert time.monotonic() - started < 5
    assert count_requests(store) == 3
    assert await rec.settle("never-seen", timeout=0.1)  # nothing pending: at once
    await rec.close()


async def test_the_recorder_gives_its_connection_back_after_failures_and_at_close(
    store: Store, backend: str,
) -> None:
    pool = store.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    rec = Recorder(store, retry_initial=0.05, retry_max=0.2)
    await rec.start()
    rec.observe(finished(conversation_id="held"))
    await rec.flush()
    assert pool.checkedout() == before + 1  # type: ignore[attr-defined]  # one, kept
    with _database_unavailable(store, backend):
        rec.observe(finished(conversation_id="held"))
        await _until(lambda: rec.failed_writes >= 2)
    await rec.flush()
    rec.observe(finished(conversation_id="held"))
    await rec.close()
    assert count_requests(store) == 3
    assert pool.checkedout() == before  # type: ignore[attr-defined]
