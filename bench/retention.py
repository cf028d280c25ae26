"""The retention sweep on a big SQLite file: how long it takes, how long it holds the write
lock, and what a writer recording requests meanwhile waits.

Fills a fresh SQLite store with ``--conversations`` conversations (two turns each, so four
messages and two requests), half of them ``--age`` days old and half ten days old, then
runs the sweep a
runtime runs (``retention_days`` and ``content_retention_days``, then the incremental
vacuum) while another thread writes one request record every 10 ms, as the recorder
would; then, the writer stopped, the full ``VACUUM`` of ``lai db vacuum``. Prints a table
and writes JSON.

    python bench/retention.py                  # 20,000 conversations, about a minute
    python bench/retention.py --smoke          # a few seconds; CI (asserts no speed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from lai.store.db import open_store  # noqa: E402
from lai.store.retention import sweep  # noqa: E402
from lai.store.space import database_size, reclaim_free_pages, row_counts, vacuum  # noqa: E402
from lai.store.writer import record_from_event, write_batch  # noqa: E402
from tests.store.helpers import finished  # noqa: E402

DAY = 86400.0
CONTENT_DAYS = 7


def _fill(store: Any, conversations: int, age_days: float) -> None:
    now = time.time()
    batch: list[Any] = []
    for i in range(conversations):
        # The older half first, as time wrote them: past retention (deleted); then the
        # rest, past content retention only (text removed).
        started = now - (age_days if i < conversations // 2 else CONTENT_DAYS + 3) * DAY
        history: list[dict[str, str]] = []
        for turn in range(2):
            history.append({"role": "user", "content": f"question {turn} of {i} " + "x" * 300})
            answer = f"answer {turn} of {i} " + "y" * 600
            batch.append(record_from_event(finished(
                conversation_id=f"c{i}", messages=list(history), answer=answer,
                started_at=started + turn)))
            history.append({"role": "assistant", "content": answer})
        if len(batch) >= 2000:
            with store.write_session() as session:
                write_batch(session, batch)
            batch = []
    if batch:
        with store.write_session() as session:
            write_batch(session, batch)


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _checkpointed_size(store: Any) -> Any:
    # Sizes after a checkpoint: the file itself, not what the WAL holds meanwhile.
    with store.engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database_size(store)


def run(conversations: int, age_days: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lai-bench-retention-"))
    store = open_store(f"sqlite:///{work / 'lai.db'}")
    store.upgrade()
    began = time.monotonic()
    _fill(store, conversations, age_days)
    fill_s = time.monotonic() - began
    rows_before = row_counts(store)
    size_before = _checkpointed_size(store).total_bytes

    # The sweep's transactions: from BEGIN to COMMIT on the sweeping thread.
    sweeper = threading.current_thread().ident
    opened: dict[int, float] = {}
    held: list[float] = []

    def on_begin(conn: Any) -> None:
        if threading.get_ident() == sweeper:
            opened[id(conn)] = time.perf_counter()

    def on_commit(conn: Any) -> None:
        start = opened.pop(id(conn), None)
        if start is not None:
            held.append((time.perf_counter() - start) * 1000)

    sa.event.listen(store.engine, "begin", on_begin)
    sa.event.listen(store.engine, "commit", on_commit)

    stop = threading.Event()
    waits: list[float] = []
    failures: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            rec = record_from_event(finished(conversation_id=f"live-{len(waits)}"))
            start = time.perf_counter()
            try:
                with store.write_session() as session:
                    write_batch(session, [rec])
            except Exception as exc:  # a locked database is what this measures
                failures.append(str(exc).splitlines()[0])
            waits.append((time.perf_counter() - start) * 1000)
            stop.wait(0.01)

    thread = threading.Thread(target=writer, name="bench-writer")
    thread.start()
    began = time.monotonic()
    result = sweep(store, now=datetime.now(UTC), retention_days=int(age_days) - 1,
                   content_retention_days=CONTENT_DAYS)
    sweep_s = time.monotonic() - began
    size_swept = _checkpointed_size(store)
    began = time.monotonic()
    freed = reclaim_free_pages(store)
    reclaim_s = time.monotonic() - began
    stop.set()
    thread.join()
    size_after = _checkpointed_size(store).total_bytes
    began = time.monotonic()
    vacuum(store)  # what `lai db vacuum` adds: rows whose text went leave part-empty pages
    vacuum_s = time.monotonic() - began
    size_vacuumed = _checkpointed_size(store).total_bytes
    store.dispose()
    deleted = result.requests + result.conversations
    return {
        "plan": {"conversations": conversations, "age_days": age_days},
        "rows_before": rows_before,
        "fill_s": round(fill_s, 2),
        "swept": {"requests": result.requests, "conversations": result.conversations,
                  "messages_cleared": result.messages_cleared},
        "summary": {
            "sweep_s": round(sweep_s, 2),
            "rows_per_s": round(deleted / sweep_s) if sweep_s else None,
            "transactions": len(held),
            "longest_transaction_ms": round(max(held), 1) if held else None,
            "p50_transaction_ms": round(statistics.median(held), 1) if held else None,
            "writer_writes": len(waits),
            "writer_p50_ms": round(_pct(waits, 50) or 0, 1),
            "writer_p99_ms": round(_pct(waits, 99) or 0, 1),
            "writer_max_ms": round(max(waits), 1) if waits else None,
            "writer_failures": len(failures),
            "size_before_mib": round(size_before / 2**20, 1),
            "free_after_sweep_mib": round((size_swept.free_bytes or 0) / 2**20, 1),
            "size_after_reclaim_mib": round(size_after / 2**20, 1),
            "reclaim_s": round(reclaim_s, 2),
            "pages_freed": freed,
            "size_after_vacuum_mib": round(size_vacuumed / 2**20, 1),
            "vacuum_s": round(vacuum_s, 2),
        },
        "failures": failures[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--age", type=float, default=400.0, help="days old, the old half")
    parser.add_argument("--smoke", action="store_true", help="500 conversations")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retention.json")
    args = parser.parse_args()
    res = run(500 if args.smoke else args.conversations, args.age)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"rows before: {res['rows_before']}; swept: {res['swept']}")
    for key, value in res["summary"].items():
        print(f"  {key:<24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
