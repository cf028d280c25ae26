"""The recorder: batches, back-pressure, mirroring, and nothing lost when the database is away."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from lai.engine.events import EventBus, RequestStarted
from lai.engine.types import RequestContext
from lai.store.db import Store
from lai.store.models import Conversation, Message, RequestRecord
from lai.store.recorder import Recorder
from lai.store.requests import count_requests
from tests.store.conftest import _admin_engine
from tests.store.helpers import finished


def _messages(store: Store, cid: str) -> list[tuple[int, str, str | None]]:
    with store.session() as s:
        rows = s.exec(
            select(Message.position, Message.role, Message.content)
            .where(Message.conversation_id == cid)
            .order_by(col(Message.position))
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_500_events_give_500_rows_in_batches(store: Store) -> None:
    bus = EventBus()
    rec = Recorder(store, max_queue=50, batch_size=100)
    rec.attach(bus)
    # Before start() and past the queue's size: the rest waits in the overflow list.
    for i in range(500):
        bus.emit(
            finished(
                conversation_id=f"c{i % 7}", messages=[{"role": "user", "content": f"question {i}"}]
            )
        )
    bus.emit(
        RequestStarted(RequestContext(), "auto", "m", "p", False, time.time(), 0.0)
    )  # not a finished request: ignored
    assert rec.backlog == 500
    assert rec.stats.overflowed == 450
    await rec.start()
    await rec.close()
    assert count_requests(store) == 500
    stats = rec.stats
    assert stats.written == 500 and stats.backlog == 0 and stats.failed_writes == 0
    assert stats.batches < 500 / 10  # batched, not one transaction per request
    with store.session() as s:
        total = s.exec(select(sa.func.sum(Conversation.message_count))).one()
        assert s.exec(select(sa.func.count()).select_from(Message)).one() == total == 1000


async def test_three_turns_mirror_the_conversation_without_duplicates(store: Store) -> None:
    rec = Recorder(store)
    await rec.start()
    history = [{"role": "system", "content": "Be brief."}]
    for turn, word in enumerate(["apples", "bananas", "cherries"]):
        history.append({"role": "user", "content": f"Tell me about {word}"})
        answer = f"{word.title()} are fruit."
        rec.observe(
            finished(
                conversation_id="conv-1",
                messages=list(history),
                answer=answer,
                username="ana",
                source="opencode",
                display_name="Fruit" if turn == 0 else None,
                prompt_tokens=10 * (turn + 1),
                completion_tokens=5,
            )
        )
        await rec.flush()
        # The client resends the answer it got, as clients do (here with a trailing newline).
        history.append({"role": "assistant", "content": answer + "\n"})
    await rec.close()

    rows = _messages(store, "conv-1")
    assert [r[1] for r in rows] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert [r[0] for r in rows] == list(range(7))
    assert rows[5][2] == "Tell me about cherries"
    with store.session() as s:
        conv = s.get(Conversation, "conv-1")
        assert conv is not None
        assert (conv.username, conv.source, conv.display_name) == ("ana", "opencode", "Fruit")
        assert conv.message_count == 7
        assert conv.total_tokens == (10 + 5) + (20 + 5) + (30 + 5)
        answer_row = s.exec(
            select(Message).where(Message.conversation_id == "conv-1", Message.position == 6)
        ).one()
        assert (answer_row.model, answer_row.provider, answer_row.completion_tokens) == (
            "qwen",
            "gpu",
            5,
        )


async def test_errors_add_a_request_row_but_no_messages_and_no_key_material(store: Store) -> None:
    rec = Recorder(store)
    await rec.start()
    rec.observe(finished(conversation_id="conv-e", status="error"))
    rec.observe(
        finished(
            conversation_id="conv-t",
            answer=None,
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
            ],
        )
    )
    await rec.close()
    with store.session() as s:
        assert s.get(Conversation, "conv-e") is None
        rows = s.exec(select(RequestRecord).order_by(col(RequestRecord.id))).all()
        assert [r.status for r in rows] == ["error", "success"]
        assert rows[0].error_code == "upstream_error" and rows[0].http_status == 502
        assert rows[0].key_name == "test-key" and rows[0].key_prefix == "lai_5f4d"
        assert rows[1].failover_from == ["other"]
        tool_msg = s.exec(
            select(Message).where(Message.conversation_id == "conv-t", Message.role == "assistant")
        ).one()
        assert tool_msg.tool_calls and tool_msg.tool_calls[0]["id"] == "call_1"


async def test_a_retried_batch_is_not_written_twice(store: Store) -> None:
    event = finished(conversation_id="conv-r")
    rec = Recorder(store)
    await rec.start()
    rec.observe(event)
    await rec.flush()
    rec.observe(event)  # e.g. a spill file replayed after the first write did commit
    await rec.close()
    assert count_requests(store) == 1
    assert len(_messages(store, "conv-r")) == 2


@contextmanager
def _database_unavailable(store: Store, backend: str) -> Iterator[None]:
    """Make writes fail: SQLite locked by another connection, PostgreSQL refusing
    connections (and its open ones terminated)."""
    if backend == "sqlite":
        blocker = sa.create_engine(store.url, isolation_level="AUTOCOMMIT")
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                conn.exec_driver_sql("ROLLBACK")
        blocker.dispose()
        return
    name = make_url(store.url).database
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        try:
            yield
        finally:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    admin.dispose()


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_briefly_unavailable_database_loses_nothing_and_says_so(
    store: Store, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lai.store.recorder")
    rec = Recorder(store, retry_initial=0.05, retry_max=0.2)
    await rec.start()
    rec.observe(finished(conversation_id="before"))
    await rec.flush()
    with _database_unavailable(store, backend):
        for i in range(20):
            rec.observe(finished(conversation_id=f"down-{i % 3}"))
        await _until(lambda: rec.failed_writes >= 2)
        assert rec.backlog == 20
    await rec.flush()
    await rec.close()
    assert count_requests(store) == 21
    assert rec.stats.backlog == 0 and rec.stats.rejected == 0
    assert any("retrying" in r.getMessage() for r in caplog.records)


async def test_shutdown_while_the_database_is_down_spills_and_the_next_start_replays(
    store: Store, backend: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    spill = tmp_path / "unwritten.jsonl"
    rec = Recorder(store, retry_initial=0.05, retry_max=0.1, spill_path=spill)
    await rec.start()
    with _database_unavailable(store, backend):
        for _ in range(5):
            rec.observe(finished(conversation_id="spilled"))
        await _until(lambda: rec.failed_writes >= 1)
        await rec.close(grace=0.3)
    assert len(spill.read_text().splitlines()) == 5
    assert json.loads(spill.read_text().splitlines()[0])["conversation_id"] == "spilled"

    again = Recorder(store, spill_path=spill)
    await again.start()
    await again.close()
    assert count_requests(store) == 5
    assert len(_messages(store, "spilled")) == 1 + 5  # the same question once, five answers
    assert not spill.exists()
    assert not spill.with_name(spill.name + ".replay").exists()

    again.observe(finished())  # too late for this process: kept for the next one
    assert len(spill.read_text().splitlines()) == 1


async def test_observe_from_another_thread(store: Store) -> None:
    rec = Recorder(store)
    await rec.start()
    await asyncio.to_thread(lambda: [rec.observe(finished()) for _ in range(10)])
    await rec.close()
    assert count_requests(store) == 10


async def test_a_burst_while_running_lands_whole_and_the_backlog_returns_to_zero(
    store: Store,
) -> None:
    # As under a flood through the proxy: records keep arriving while batches are written
    # (more rows than one INSERT statement takes, in sizes that are not powers of two).
    rec = Recorder(store, batch_size=300, linger=0.05)
    bus = EventBus()
    rec.attach(bus)
    await rec.start()
    sent: list[str] = []
    for burst in range(25):
        for i in range(117):
            cid = f"burst-{burst}-{i}"
            sent.append(cid)
            bus.emit(finished(conversation_id=cid,
                              messages=[{"role": "user", "content": f"question {cid}"}]))
        # What settle() remembers of conversations never outgrows the backlog, though
        # the queue never runs empty in between (it grew with every request).
        assert len(rec._last_of) <= rec.backlog
        await asyncio.sleep(0.005)
    assert await rec.settle(sent[-1], timeout=120)
    await rec.flush()
    assert rec.backlog == 0 and not rec._last_of
    await rec.close()
    assert rec.stats.written == len(sent) == count_requests(store)
    assert rec.stats.messages == 2 * len(sent) and rec.stats.failed_writes == 0
    with store.session() as s:
        stored = s.exec(select(RequestRecord).where(
            RequestRecord.conversation_id == sent[1234])).one()
        conv = s.get(Conversation, sent[1234])
    assert stored.failover_from == ["other"] and stored.status == "success"
    assert stored.started_at.tzinfo is not None and stored.prompt_tokens == 10
    assert conv is not None and conv.message_count == 2 and conv.total_tokens == 15
    assert _messages(store, sent[1234]) == [
        (0, "user", f"question {sent[1234]}"), (1, "assistant", "Hello!")]
