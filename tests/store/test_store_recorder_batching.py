"""The recorder's batching: the linger under a steady load, what cuts it short, its own
connection, and rows stored exactly as the ORM stores them (both backends)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from lai.engine.events import EventBus
from lai.store import conversations as repo
from lai.store.bulk import sqlite_time
from lai.store.db import Store
from lai.store.models import Conversation, Message, RequestRecord
from lai.store.recorder import Recorder
from lai.store.requests import count_requests
from lai.store.writer import record_from_event
from tests.store.conftest import _admin_engine
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


async def test_a_server_restart_while_idle_costs_no_failed_write(
    store: Store, backend: str,
) -> None:
    # The recorder keeps its connection between batches; one that sat idle is checked
    # again (the pool's pre-ping) before it is used, as every pooled connection was.
    rec = Recorder(store)
    await rec.start()
    rec.observe(finished(conversation_id="before"))
    await rec.flush()
    if backend == "postgresql":
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{make_url(store.url).database}' AND pid <> pg_backend_pid()")
        admin.dispose()
    await asyncio.sleep(1.2)
    rec.observe(finished(conversation_id="after"))
    await rec.close()
    assert count_requests(store) == 2
    assert rec.failed_writes == 0


async def test_the_writers_planner_setting_stays_in_its_transaction(
    store: Store, backend: str,
) -> None:
    # PostgreSQL plans the recorder's statements for their own parameters (a generic plan
    # made on a new, empty database scanned whole tables): SET LOCAL, so a connection
    # the recorder gives back to the pool plans as any other.
    if backend != "postgresql":
        return
    rec = Recorder(store)
    await rec.start()
    rec.observe(finished(conversation_id="planned"))
    await rec.close()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # the recorder's, back in the pool
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
    assert count_requests(store) == 1


async def test_a_stored_conversation_keeps_its_name_and_fills_only_missing_labels(
    store: Store,
) -> None:
    rec = Recorder(store)
    await rec.start()
    first = finished(conversation_id="named", display_name="From header",
                     started_at=time.time() - 60)
    rec.observe(first)
    await rec.flush()
    repo.rename_conversation(store, "named", "Renamed by the user")
    with store.session() as s:
        stored = s.get(Conversation, "named")
        assert stored is not None and stored.username is None
        updated = stored.updated_at
    rec.observe(finished(conversation_id="named", display_name="Another header",
                         username="ana", source="aider", prompt_tokens=7,
                         completion_tokens=3,
                         messages=[{"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello!"},
                                   {"role": "user", "content": "Again"}]))
    await rec.close()
    with store.session() as s:
        conv = s.get(Conversation, "named")
    assert conv is not None
    assert (conv.display_name, conv.username, conv.source) == (
        "Renamed by the user", "ana", "aider")
    assert conv.message_count == 4 and conv.total_tokens == 15 + 10
    assert conv.updated_at > updated


async def test_rows_hold_the_values_the_orm_stores(store: Store, backend: str) -> None:
    # The recorder builds its rows without the ORM; the text SQLite compares times as and
    # the values read back must be what the ORM writes for the same row.
    times = [datetime(2026, 3, 4, 5, 6, 7, 0, tzinfo=UTC),
             datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
             datetime(2027, 1, 2, 3, 4, 5, 120_000, tzinfo=UTC)]
    rec = Recorder(store)
    await rec.start()
    for i, at in enumerate(times):
        rec.observe(finished(conversation_id=f"t{i}", request_id=f"rec-{i}",
                             started_at=at.timestamp(),
                             tool_calls=[{"id": "call_1", "type": "function"}]))
    await rec.close()
    with store.write_session() as s:
        for i, at in enumerate(times):
            s.add(RequestRecord(request_id=f"orm-{i}", endpoint="chat.completions",
                                model_requested="auto", status="success", started_at=at,
                                streaming=False, failover_from=["other"], cost_usd=0))
    with store.session() as s:
        if backend == "sqlite":
            text = dict(s.execute(sa.text("SELECT request_id, started_at FROM requests")).all())
            for i in range(len(times)):
                assert text[f"rec-{i}"] == text[f"orm-{i}"]
        rows = {r.request_id: r for r in s.exec(select(RequestRecord)).all()}
        answer = s.exec(select(Message).where(Message.conversation_id == "t1",
                                              Message.role == "assistant")).one()
    for i, at in enumerate(times):
        ours, theirs = rows[f"rec-{i}"], rows[f"orm-{i}"]
        assert ours.started_at == theirs.started_at == at
        assert ours.failover_from == theirs.failover_from == ["other"]
        assert ours.streaming is theirs.streaming is False
    assert answer.tool_calls == [{"id": "call_1", "type": "function"}]
    # The answer is dated at the end of the request (100 ms later), past a new year.
    assert abs(answer.created_at - (times[1] + timedelta(milliseconds=100))) < timedelta(
        microseconds=2)


def test_sqlite_time_is_the_text_sqlalchemy_writes_for_the_same_timestamp() -> None:
    # The recorder's times go to SQLite as text made from the timestamp directly; SQLite
    # compares times as text, so it must be the ORM's, rounding included.
    process = sa.DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    rng = random.Random(16)
    stamps = [0.0, 1.0, -1.5, 1_700_000_000.0, 1_700_000_000.9999996, 1_700_000_000.0000004,
              1_799_999_999.4999995, 253_402_300_799.0]
    stamps += [rng.uniform(0, 4_000_000_000) for _ in range(20_000)]
    stamps += [1_764_000_000 + rng.randrange(10**6) / 1e6 + rng.choice((0, 5e-7, -5e-7))
               for _ in range(20_000)]
    for ts in stamps:
        expected = process(datetime.fromtimestamp(ts, UTC).replace(tzinfo=None))
        assert sqlite_time(ts) == expected, ts


async def test_a_batch_mixing_whole_and_fractional_numbers_lands(store: Store) -> None:
    # PostgreSQL gets a column as one array: an int cost beside a float one (a record
    # read back from a spill file, a free local model) must not fail the batch.
    rec = Recorder(store)
    await rec.start()
    for i, cost in enumerate([0, 0.25, 3, 1]):
        record = record_from_event(finished(conversation_id=f"mix-{i}"))
        record["cost_usd"], record["ttft_ms"] = cost, [12, 7.5, None, 0][i]
        rec.submit(record)
    await rec.close()
    assert rec.failed_writes == 0
    with store.session() as s:
        rows = s.exec(select(RequestRecord).order_by(col(RequestRecord.conversation_id))).all()
    assert [(r.cost_usd, r.ttft_ms) for r in rows] == [
        (0, 12), (0.25, 7.5), (3, None), (1, 0)]
