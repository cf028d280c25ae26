"""``lai db backup`` of a live database while the proxy serves, and restoring the copy;
PostgreSQL's pg_dump / pg_restore as docs/store.md tells an operator to use them."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from lai.store.conversations import get_conversation
from lai.store.db import open_store
from lai.store.requests import count_requests
from lai.store.writer import record_from_event, write_batch
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningProxy, make_settings, model, provider, start_proxy
from tests.store.conftest import create_pg_database, drop_pg_database
from tests.store.helpers import finished
from tests.tools import require_tool


async def _ask(proxy: RunningProxy, cid: str, text: str) -> None:
    r = await proxy.http.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
        headers={"X-Conversation-ID": cid},
    )
    assert r.status_code == 200, r.text


def _inspect_copy(dest: Path) -> tuple[int, int, list[str]]:
    """Check the backup file; answers its requests, the messages of the conversations
    written before the backup, and the conversations whose counts do not match."""
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{dest}-wal").exists()  # the copy stands alone
    with closing(sqlite3.connect(dest)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        copied = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        before = conn.execute(
            "SELECT count(*) FROM messages WHERE conversation_id LIKE 'before-%'").fetchone()[0]
        # A consistent snapshot: every conversation has exactly the messages it counts.
        torn = [row[0] for row in conn.execute(
            "SELECT id FROM conversations c WHERE message_count != "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)")]
    return copied, before, torn


async def test_a_backup_taken_under_load_restores_every_answered_request(  # type: ignore[no-untyped-def]
    proxy_factory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    proxy = await proxy_factory([provider("box", upstream.url, max_concurrent=8)],
                                [model("m", "box")])
    for i in range(30):
        await _ask(proxy, f"before-{i % 6}", f"question {i}")
    assert proxy.runtime.recorder is not None and proxy.runtime.store is not None
    await proxy.runtime.recorder.flush()  # answered and written before the backup begins
    assert count_requests(proxy.runtime.store) == 30

    config = tmp_path / "backup.toml"
    config.write_text(f'[server]\ndatabase_url = "sqlite:///{tmp_path / "lai.db"}"\n'
                      f'data_dir = "{tmp_path / "data"}"\n')
    answered = 0
    stop, flowing = asyncio.Event(), asyncio.Event()

    async def load(worker: int) -> None:
        nonlocal answered
        while not stop.is_set():
            await _ask(proxy, f"during-{worker}", f"more {answered}")
            answered += 1
            if answered >= 8:
                flowing.set()
            await asyncio.sleep(0.02)  # steady traffic that leaves the CPU to the backup

    workers = [asyncio.create_task(load(n)) for n in range(4)]
    try:
        await asyncio.wait_for(flowing.wait(), 30)
        at_start = answered
        dest = tmp_path / "backups" / "lai-backup.db"
        dest.parent.mkdir()
        ran = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lai.cli", "db", "backup", str(dest), "--config", str(config)],
            capture_output=True, text=True, timeout=120, env={**os.environ},
        )
        answered_meanwhile = answered - at_start
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert ran.returncode == 0, ran.stderr
    assert "integrity ok" in ran.stdout
    assert answered_meanwhile > 0, ran.stdout  # the proxy kept answering during the copy
    await proxy.runtime.recorder.flush()
    live = count_requests(proxy.runtime.store)

    copied, before, torn = await asyncio.to_thread(_inspect_copy, dest)
    assert 30 <= copied <= live
    assert before == 60 and torn == []

    # Restore: a fresh data dir with the copy as its database, and start.
    fresh = tmp_path / "restored"
    await asyncio.to_thread(fresh.mkdir)
    await asyncio.to_thread(shutil.copy2, dest, fresh / "lai.db")
    restored = await start_proxy(make_settings(
        fresh, [provider("box", upstream.url)], [model("m", "box")]))
    try:
        assert restored.runtime.store is not None and restored.runtime.recorder is not None
        assert count_requests(restored.runtime.store) == copied
        conv = (await restored.http.get("/v1/conversations/before-3")).json()
        assert [m["content"] for m in conv["messages"] if m["role"] == "user"] == [
            "question 3", "question 9", "question 15", "question 21", "question 27"]
        await _ask(restored, "after-restore", "still writable?")
        await restored.runtime.recorder.flush()
        assert count_requests(restored.runtime.store) == copied + 1
    finally:
        await restored.stop()


def test_postgresql_backup_and_restore_with_pg_dump_as_documented(tmp_path: Path) -> None:
    tools = [require_tool(tool, "apt-get install postgresql-client")
             for tool in ("pg_dump", "pg_restore")]
    source_url, target_url = create_pg_database(), create_pg_database()
    try:
        source = open_store(source_url)
        try:
            source.upgrade()
            with source.write_session() as session:
                write_batch(session, [record_from_event(finished(
                    conversation_id=f"pg-{i % 4}",
                    messages=[{"role": "user", "content": f"question {i}"}])) for i in range(12)])
        finally:
            source.dispose()

        def libpq(url: str) -> str:  # the URL without SQLAlchemy's +psycopg, as documented
            return make_url(url).set(drivername="postgresql").render_as_string(
                hide_password=False)

        dump = tmp_path / "lai.dump"
        subprocess.run([tools[0], "--format=custom", f"--file={dump}", libpq(source_url)],
                       check=True, capture_output=True, timeout=60)
        subprocess.run([tools[1], f"--dbname={libpq(target_url)}", "--no-owner", str(dump)],
                       check=True, capture_output=True, timeout=60)

        restored = open_store(target_url)
        try:
            restored.upgrade()  # at head already: nothing to do
            assert restored.current() == restored.head()
            assert count_requests(restored) == 12
            assert len(get_conversation(restored, "pg-1")["messages"]) == 6
        finally:
            restored.dispose()
    finally:
        drop_pg_database(source_url)
        drop_pg_database(target_url)
