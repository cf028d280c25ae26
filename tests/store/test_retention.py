"""server.retention_days and server.content_retention_days: the sweep, on both backends."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from lai.engine.clock import SystemClock
from lai.errors import NotFound
from lai.store.conversations import get_conversation, list_conversations
from lai.store.db import Store
from lai.store.images import ImageStore
from lai.store.models import Message
from lai.store.requests import count_requests, usage
from lai.store.retention import RetentionSweeper, delete_requests_before, sweep
from lai.store.writer import record_from_event, write_batch
from tests.store.helpers import finished

DAY = 86400.0
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _at(days_ago: float) -> float:
    return NOW.timestamp() - days_ago * DAY


def _write(store: Store, *events: Any) -> None:
    with store.write_session() as session:
        write_batch(session, [record_from_event(e) for e in events])


def _turns(store: Store, cid: str, days_ago: list[float], word: str) -> None:
    """One request per entry of ``days_ago``, each resending the history so far."""
    history: list[dict[str, Any]] = []
    for n, ago in enumerate(days_ago):
        history.append({"role": "user", "content": f"{word} question {n}"})
        answer = f"{word} answer {n}"
        _write(store, finished(conversation_id=cid, messages=list(history), answer=answer,
                               started_at=_at(ago)))
        history.append({"role": "assistant", "content": answer})


def _positions(store: Store, cid: str) -> list[tuple[int, str, str | None]]:
    with store.session() as s:
        rows = s.exec(select(Message.position, Message.role, Message.content)
                      .where(Message.conversation_id == cid).order_by(col(Message.position)))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_retention_deletes_old_requests_and_conversations_with_their_images(
    store: Store, tmp_path: Path
) -> None:
    images = ImageStore(tmp_path / "data")
    store.on_conversation_deleted.append(images.delete_conversation)
    for cid in ("old", "resumed"):
        (images.root / cid / "msg-1").mkdir(parents=True)
    _turns(store, "old", [40, 39], "ancient")
    _turns(store, "resumed", [50, 1], "revived")  # last active yesterday: kept whole
    _turns(store, "recent", [2], "fresh")
    _write(store, finished(started_at=_at(45), status="error"))  # no conversation
    assert count_requests(store) == 6

    result = sweep(store, now=NOW, retention_days=30, content_retention_days=None, pause=0)

    assert (result.conversations, result.requests) == (1, 4)
    with pytest.raises(NotFound):
        get_conversation(store, "old")
    assert _positions(store, "old") == []
    assert not (images.root / "old").exists()
    assert (images.root / "resumed" / "msg-1").is_dir()
    resumed = get_conversation(store, "resumed")
    assert [m["content"] for m in resumed["messages"]] == [
        "revived question 0", "revived answer 0", "revived question 1", "revived answer 1"]
    # The requests of the last 30 days are what `lai stats` still counts.
    assert count_requests(store) == 2
    assert sum(r.requests for r in usage(store, NOW - timedelta(days=365))) == 2
    # Nothing older is left, so a second sweep finds nothing.
    again = sweep(store, now=NOW, retention_days=30, content_retention_days=None, pause=0)
    assert not again.changed


def test_content_retention_keeps_rows_and_statistics(store: Store) -> None:
    _turns(store, "chat", [20, 19, 1], "pelican")
    tool_call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    _write(store, finished(conversation_id="tools", answer=None, tool_calls=tool_call,
                           messages=[{"role": "user", "content": "secret plan"}],
                           started_at=_at(15)))
    before = usage(store, NOW - timedelta(days=365), by="model")

    result = sweep(store, now=NOW, retention_days=None, content_retention_days=7, pause=0)

    assert result.messages_cleared == 6  # 2 turns of 2 messages, the tool request's 2
    chat = get_conversation(store, "chat")
    contents = [m["content"] for m in chat["messages"]]
    assert contents == [None, None, None, None, "pelican question 2", "pelican answer 2"]
    assert all("content_removed_at" in m for m in chat["messages"][:4])
    assert "content_removed_at" not in chat["messages"][4]
    assert chat["messages"][1]["completion_tokens"] == 5  # the counts stay
    tools = get_conversation(store, "tools")
    assert tools["messages"][1].get("tool_calls") is None
    # Usage is untouched; the removed text is no longer found by search.
    assert usage(store, NOW - timedelta(days=365), by="model") == before
    assert count_requests(store) == 4
    assert list_conversations(store, q="secret").data == []
    assert [c["id"] for c in list_conversations(store, q="pelican").data] == ["chat"]


def test_a_conversation_continued_after_content_removal_is_not_duplicated(
    store: Store,
) -> None:
    _turns(store, "chat", [20, 19], "heron")
    sweep(store, now=NOW, retention_days=None, content_retention_days=7, pause=0)
    # The client resends the full history, text and all, with one more question.
    history = [
        {"role": "user", "content": "heron question 0"},
        {"role": "assistant", "content": "heron answer 0"},
        {"role": "user", "content": "heron question 1"},
        {"role": "assistant", "content": "heron answer 1"},
        {"role": "user", "content": "and now?"},
    ]
    _write(store, finished(conversation_id="chat", messages=history, answer="now this",
                           started_at=_at(0)))
    rows = _positions(store, "chat")
    assert [p for p, _, _ in rows] == [0, 1, 2, 3, 4, 5]
    assert [c for _, _, c in rows][4:] == ["and now?", "now this"]
    assert get_conversation(store, "chat")["message_count"] == 6


def test_sweep_works_in_short_transactions(store: Store) -> None:
    _write(store, *[finished(started_at=_at(100)) for _ in range(250)])
    commits: list[object] = []

    def count(conn: object) -> None:
        commits.append(conn)

    sa.event.listen(store.engine, "commit", count)
    try:
        deleted = delete_requests_before(store, NOW - timedelta(days=30), batch_size=50,
                                         pause=0)
    finally:
        sa.event.remove(store.engine, "commit", count)
    assert deleted == 250 and count_requests(store) == 0
    assert len(commits) >= 5  # 50 rows per transaction, not one long write lock


def test_a_stopped_sweep_leaves_the_rest_for_the_next(store: Store) -> None:
    _write(store, *[finished(started_at=_at(100)) for _ in range(30)])
    stop = threading.Event()
    stop.set()
    result = sweep(store, now=NOW, retention_days=30, content_retention_days=None, stop=stop)
    assert result.stopped and count_requests(store) == 30
    assert sweep(store, now=NOW, retention_days=30, content_retention_days=None,
                 pause=0).requests == 30


class _ShiftedClock(SystemClock):
    """The real clock, ``offset`` seconds in the future: the one thing tests patch."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


async def test_the_sweeper_runs_off_the_event_loop_and_stops_cleanly(store: Store) -> None:
    now = time.time()
    _write(store, *[finished(conversation_id=f"c{i}", started_at=now) for i in range(5)])
    threads: list[int] = []
    store.on_conversation_deleted.append(lambda _cid: threads.append(threading.get_ident()))
    # Ten days from now everything written today is past a 7-day retention.
    sweeper = RetentionSweeper(store, retention_days=7, clock=_ShiftedClock(10 * DAY), pause=0)
    sweeper.start()
    try:
        for _ in range(500):
            if sweeper.last is not None:
                break
            await asyncio.sleep(0.01)
    finally:
        await sweeper.close()
    assert sweeper.last is not None and sweeper.last.conversations == 5
    assert count_requests(store) == 0
    assert threads and threading.get_ident() not in threads  # the work ran in a thread


async def test_without_retention_settings_nothing_is_swept(store: Store) -> None:
    _write(store, finished(started_at=_at(1000)))
    sweeper = RetentionSweeper(store, clock=_ShiftedClock(0))
    sweeper.start()
    await sweeper.close()
    assert not sweeper.enabled and sweeper.last is None
    assert count_requests(store) == 1


async def test_the_proxy_sweeps_at_start_and_keeps_serving(  # type: ignore[no-untyped-def]
    proxy_factory, upstream, tmp_path: Path
) -> None:
    from lai.store.db import open_store
    from tests.harness import model, provider

    url = f"sqlite:///{tmp_path / 'lai.db'}"  # the harness's database
    before = open_store(url)
    try:
        before.upgrade()
        _write(before, *[finished(conversation_id=f"old-{i}", started_at=time.time() - 40 * DAY)
                         for i in range(20)])
    finally:
        before.dispose()
    folder = tmp_path / "data" / "images" / "old-3" / "msg-1"
    folder.mkdir(parents=True)

    proxy = await proxy_factory([provider("box", upstream.url)], [model("m", "box")],
                                retention_days=30)
    r = await proxy.http.post("/v1/chat/completions", headers={"X-Conversation-ID": "new"},
                              json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    sweeper, store = proxy.runtime.retention, proxy.runtime.store
    assert sweeper is not None and store is not None and proxy.runtime.recorder is not None
    for _ in range(500):
        if sweeper.last is not None:
            break
        await asyncio.sleep(0.01)
    assert sweeper.last is not None and sweeper.last.conversations == 20
    await proxy.runtime.recorder.flush()
    assert count_requests(store) == 1
    assert [c["id"] for c in (await proxy.http.get("/v1/conversations")).json()["data"]] == ["new"]
    assert not await asyncio.to_thread(folder.exists)
