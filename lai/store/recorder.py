"""The async recorder: engine events in, database rows out, never on the request path.

The observer it subscribes to the engine's event bus only appends to a buffer. A worker
task takes batches from the buffer and writes each in one transaction in the recorder's
own thread, so the event loop never waits on the database. One thread, not the loop's
shared pool: each pool thread that ran a batch kept its own malloc arena as large as a
batch's working set, and resident memory crept up with every thread that took a turn.
One database connection, held from one batch to the next (given back to the pool after a
failure or a second without writes).

A batch is written once ``batch_size`` records wait, or ``linger`` seconds after the
previous batch was taken (after the first record, when the recorder was idle): under a
steady load each transaction carries ``rate x linger`` requests (at most ``batch_size``),
not the few that came in while the previous one was written.

Nothing is dropped silently:

- The queue holds ``max_queue`` records; when it is full, new records wait in an
  overflow list, ``overflowed`` counts them and a log line reports the backlog.
- A batch that fails is kept and retried with exponential backoff; every failure is
  logged and counted in ``failed_writes``. A batch that keeps failing for a reason other
  than an unavailable database is split, and a single record the database refuses is
  logged in full, counted in ``rejected`` and spilled to ``spill_path``.
- ``settle(conversation_id)`` waits until the records of that conversation submitted so
  far are written, cutting the linger short: reads of a conversation call it first, so
  a client sees the request lai just answered (read-your-writes). It costs the hot path
  one dict assignment and one append per record, forgotten once the record is stored.
- ``close()`` writes everything left. If the database is still down when its timeout
  runs out, the rest goes to ``spill_path`` (JSON lines), read back by the next
  ``start()``; without a spill path each lost request id is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from lai.engine.events import Event, EventBus, RequestFinished
from lai.store.db import Store
from lai.store.private import make_private_dir, open_private
from lai.store.writer import BatchResult, Record, record_from_event, write_batch

log = logging.getLogger("lai.store.recorder")

SETTLE_TIMEOUT = 5.0
"""Seconds a read waits for its conversation's records before it goes ahead anyway."""
_GIVE_UP_SPLITTING = 3
"""Failed attempts (not counting an unavailable database) before a batch is split."""
_KEEP_CONNECTION = 1.0
"""Seconds the writer's connection is reused after a write. Past that it goes back to
the pool and the next write takes one from there, checked first (PostgreSQL's pre-ping):
a server restart while lai was idle costs no failed write."""


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """Counters for /metrics and the TUI."""

    written: int
    """Requests rows written."""
    messages: int
    """Message rows written."""
    batches: int
    failed_writes: int
    """Batch writes that failed (each retried)."""
    backlog: int
    """Records waiting: queue, overflow and the batch being written."""
    overflowed: int
    """Records that found the queue full and waited in the overflow list."""
    rejected: int
    """Records the database refused on their own (logged in full and spilled)."""


def _ids(records: list[Record]) -> str:
    shown = ", ".join(str(r.get("request_id")) for r in records[:20])
    return shown + (f" and {len(records) - 20} more" if len(records) > 20 else "")


def _transient(exc: BaseException) -> bool:
    """A locked, unreachable or restarting database: wait and retry the same batch."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Recorder:
    """Records every ``RequestFinished`` event as rows, in batches, off the event loop.

    Usage: ``recorder.attach(engine.events)``, ``await recorder.start()``, and at
    shutdown ``await recorder.close()`` after the engine finished its requests.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        backlog_log_interval: float = 10.0,
        spill_path: Path | None = None,
        linger: float = 0.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.backlog_log_interval = backlog_log_interval
        self.spill_path = spill_path
        self.linger = linger
        """Seconds between the batches of a load lighter than ``batch_size`` records a
        linger, so that one transaction carries many requests (``settle``, ``flush`` and
        ``close`` cut it short)."""
        self._queue: deque[Record] = deque()
        self._overflow: deque[Record] = deque()
        self._current: list[Record] = []
        """The batch being written (taken out of the queue, not yet committed)."""
        self._replay_file: Path | None = None
        # observe() may be called from another thread (an embedded TUI worker): the
        # buffers are guarded, and the worker is woken through the loop.
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._connection: sa.Connection | None = None
        """The writer thread's own connection (``Store.write_connection``)."""
        self._connection_used = 0.0
        self._closing = False
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None
        self._last_backlog_log = 0.0
        self._written = self._messages = self._batches = 0
        # Read-your-writes (settle): records are written in the order they were
        # submitted, so "the n-th record is stored" is "finished >= n".
        self._submitted = 0
        self._finished = 0
        self._hurry_until = 0
        """No lingering while records up to this number are not stored: someone waits
        for them (``settle``, ``flush``)."""
        self._last_of: dict[str, int] = {}
        """conversation id -> number of its newest record submitted and not finished."""
        self._pending: deque[tuple[int, str]] = deque()
        """(number, conversation id) of the records in ``_last_of``, oldest first: what
        ``_finish`` forgets as records are stored, so the map stays as small as the
        backlog under a load that never lets the queue run empty."""
        self._failed_writes = self._overflowed = self._rejected = 0

    # -- counters -----------------------------------------------------------------------

    @property
    def failed_writes(self) -> int:
        return self._failed_writes

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._overflow) + len(self._current)

    @property
    def stats(self) -> RecorderStats:
        return RecorderStats(
            written=self._written,
            messages=self._messages,
            batches=self._batches,
            failed_writes=self._failed_writes,
            backlog=self.backlog,
            overflowed=self._overflowed,
            rejected=self._rejected,
        )

    # -- the observer side --------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        """Subscribe to ``bus`` (once; ``close()`` unsubscribes)."""
        if self._unsubscribe is None:
            self._unsubscribe = bus.subscribe(self.observe)

    def observe(self, event: Event) -> None:
        """The event-bus observer: queue a finished request. Never blocks, never raises
        for a full queue (the record waits in the overflow list)."""
        if isinstance(event, RequestFinished):
            self.submit(record_from_event(event))

    def submit(self, record: Record) -> None:
        """Queue one record (as made by ``record_from_event``). After ``close()`` the
        record goes straight to the spill file (or the error log)."""
        if self._closed:
            log.error("recorder: a record arrived after close()")
            self._spill([record])
            return
        with self._lock:
            self._submitted += 1
            cid = record.get("conversation_id")
            if cid:
                self._last_of[cid] = self._submitted
                self._pending.append((self._submitted, cid))
            # The worker looks at the queue after clearing its wake-up event, so only the
            # record that finds the queue empty needs to wake it.
            idle = not self._queue
            if self._overflow or len(self._queue) >= self.max_queue:
                self._overflow.append(record)
                self._overflowed += 1
                waiting = len(self._queue) + len(self._overflow)
            else:
                self._queue.append(record)
                waiting = 0
            full = len(self._queue) == self.batch_size  # a lingering worker need not wait
        if waiting:
            self._log_backlog(waiting)
        if idle:
            self._signal(self._wake)
        elif full:
            self._signal(self._hurry)

    def _log_backlog(self, waiting: int) -> None:
        now = time.monotonic()
        if now - self._last_backlog_log >= self.backlog_log_interval:
            self._last_backlog_log = now
            log.warning(
                "recorder backlog: %d records waiting, queue of %d full "
                "(database slow or unavailable); nothing is dropped",
                waiting,
                self.max_queue,
            )

    def _signal(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if loop is None or event is None or loop.is_closed():
            return  # not started: start() picks the records up
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    # -- the worker side ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker (idempotent), first queueing records a previous process
        spilled. Raises ``OSError`` when the spill file exists but cannot be read."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._hurry = asyncio.Event()
        self._closing = False
        self._closed = False
        for record in self._read_spill():
            self.submit(record)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lai-recorder")
        self._task = asyncio.create_task(self._run(), name="lai-recorder")
        self._wake.set()

    def _take(self) -> list[Record]:
        with self._lock:
            batch: list[Record] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            # Refill the queue from the overflow, oldest first, to keep the order.
            while self._overflow and len(self._queue) < self.max_queue:
                self._queue.append(self._overflow.popleft())
            self._current = batch
            return batch

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            taken = time.monotonic()
            batch = self._take()
            if not batch:
                self._forget_replay_file()
                assert self._progress is not None
                self._progress.set()
                if self._closing:
                    return
                self._wake.clear()
                if self._queue_empty():
                    await self._wake.wait()
                    await self._gather(time.monotonic())
                continue
            await self._write_with_retry(batch)
            # What came in while this batch was written waits for more, up to a linger
            # after this one was taken, unless it makes a whole batch already.
            await self._gather(taken)

    async def _gather(self, since: float) -> None:
        # A transaction per request costs more than the write itself: each holds the GIL
        # the event loop needs and hands it back and forth (bench/README.md).
        hurry = self._hurry
        if not self.linger or hurry is None:
            return
        deadline = since + self.linger
        while (not self._closing and self._finished >= self._hurry_until
               and len(self._queue) < self.batch_size):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            hurry.clear()  # before waiting: settle() sets _hurry_until, then the event
            try:
                async with asyncio.timeout(left):
                    await hurry.wait()
            except TimeoutError:
                return

    def _hasten(self, target: int) -> None:
        """Someone waits for the records up to number ``target``: stop lingering."""
        if target > self._hurry_until:
            self._hurry_until = target
        if self._hurry is not None:
            self._hurry.set()

    def _queue_empty(self) -> bool:
        with self._lock:
            return not self._queue and not self._overflow

    async def _write_with_retry(self, batch: list[Record]) -> None:
        delay = self.retry_initial
        refused = 0
        while True:
            try:
                result = await self._in_thread(batch)
            except Exception as exc:
                self._failed_writes += 1
                if not _transient(exc):
                    refused += 1
                    if refused >= _GIVE_UP_SPLITTING:
                        await self._write_one_by_one(batch)
                        return
                log.warning(
                    "recorder: writing %d records failed (%s: %s); retrying in %.1fs "
                    "(%d failed writes so far, %d records waiting)",
                    len(batch),
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    delay,
                    self._failed_writes,
                    self.backlog,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self._done(result, finished=len(batch))
            return

    async def _write_one_by_one(self, batch: list[Record]) -> None:
        """Find the record the database refuses: write each alone; spill the refused."""
        for i, record in enumerate(batch):
            attempts = 0
            delay = self.retry_initial
            while True:
                try:
                    result = await self._in_thread([record])
                except Exception as exc:
                    self._failed_writes += 1
                    attempts += 1
                    if _transient(exc) or attempts < _GIVE_UP_SPLITTING:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.retry_max)
                        continue
                    self._rejected += 1
                    log.error(
                        "recorder: the database refuses request %s (%s: %s); record: %s",
                        record.get("request_id"),
                        type(exc).__name__,
                        exc,
                        json.dumps(record, default=str)[:4000],
                    )
                    self._spill([record])
                    with self._lock:
                        self._current = batch[i + 1 :]
                    self._finish(1)
                    break
                self._done(result, remaining=batch[i + 1 :], finished=1)
                break

    async def _in_thread(self, batch: list[Record]) -> BatchResult:
        assert self._thread is not None and self._loop is not None
        return await self._loop.run_in_executor(self._thread, self._write, batch)

    def _write(self, batch: list[Record]) -> BatchResult:
        # In the writer thread, as is every use of the connection.
        connection = self._connection
        if connection is not None and time.monotonic() - self._connection_used > _KEEP_CONNECTION:
            self._connection = None
            self._close_connection(connection)
            connection = None
        if connection is None:
            connection = self._connection = self.store.write_connection()
        try:
            with self.store.write_session(connection) as session:
                return write_batch(session, batch)
        except BaseException:
            # Locked, broken or refused: the next attempt starts on a fresh connection.
            self._connection = None
            self._close_connection(connection)
            raise
        finally:
            self._connection_used = time.monotonic()

    @staticmethod
    def _close_connection(connection: sa.Connection) -> None:
        try:
            connection.close()
        except Exception:  # a dead connection: nothing left to release
            log.debug("recorder: closing its connection failed", exc_info=True)

    def _release_connection(self) -> asyncio.Future[None] | None:
        """Return the writer's connection to the pool, in the writer thread, after the
        write that may still run there."""
        if self._thread is None or self._loop is None:
            return None

        def release() -> None:
            connection, self._connection = self._connection, None
            if connection is not None:
                self._close_connection(connection)

        return self._loop.run_in_executor(self._thread, release)

    def _done(self, result: BatchResult, remaining: list[Record] | None = None,
              *, finished: int) -> None:
        self._written += result.requests
        self._messages += result.messages
        self._batches += 1
        with self._lock:
            self._current = remaining or []
        self._finish(finished)

    def _finish(self, count: int) -> None:
        """``count`` more records, the oldest not finished, are stored (or spilled)."""
        with self._lock:
            self._finished += count
            pending, last_of = self._pending, self._last_of
            while pending and pending[0][0] <= self._finished:
                number, cid = pending.popleft()
                if last_of.get(cid) == number:
                    del last_of[cid]
        if self._progress is not None:
            self._progress.set()

    # -- shutdown and spilling ----------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every record queued so far is written."""
        if self._progress is None:
            raise RuntimeError("recorder not started")
        self._hasten(self._submitted)
        while True:
            # Clear before looking, so progress made in between is not missed.
            self._progress.clear()
            if not self.backlog:
                return
            await self._progress.wait()

    async def settle(self, conversation_id: str | None = None, *,
                     timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until the records submitted so far of ``conversation_id`` (of every
        conversation when None) are stored, cutting the linger short: after it, a read
        sees every request lai has answered. Answers False (and logs) when that took more
        than ``timeout`` seconds (the database is slow or down), or when the recorder is
        not running; True at once when nothing of that conversation is pending."""
        with self._lock:
            target = (self._submitted if conversation_id is None
                      else self._last_of.get(conversation_id, 0))
        if self._finished >= target:
            return True
        loop = self._loop
        if loop is None or self._task is None or self._progress is None or loop.is_closed():
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:  # called from another thread's loop (an embedded TUI)
            future = asyncio.run_coroutine_threadsafe(self._settle(target, timeout), loop)
            return await asyncio.wrap_future(future)
        return await self._settle(target, timeout)

    async def _settle(self, target: int, timeout: float) -> bool:
        assert self._progress is not None
        self._hasten(target)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._progress.clear()  # before looking, as in flush()
                    if self._finished >= target:
                        return True
                    await self._progress.wait()
        except TimeoutError:
            log.warning("recorder: records still not written after %.1fs (%d waiting); "
                        "a read may miss the newest requests", timeout, self.backlog)
            return False

    async def close(self, grace: float | None = 30.0) -> None:
        """Stop observing, write everything left, stop the worker. Idempotent.

        If the database is still failing after ``grace`` seconds, the records left are
        appended to ``spill_path`` (or, without one, their request ids logged as lost).
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task = self._task
        if task is None:
            self._closed = True
            self._spill(self._drain())  # never started: spill rather than lose
            return
        self._closing = True
        if self._hurry is not None:
            self._hurry.set()
        self._signal(self._wake)
        cut_off = False
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            cut_off = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            left = self._drain()
            log.error(
                "recorder: database still failing at shutdown; %d records not written",
                len(left),
            )
            self._spill(left)
        self._task = None
        released = self._release_connection()
        if released is not None and not cut_off:
            await released
        if self._thread is not None:
            # Not waiting: a write cut off by the grace may still run; it ends by itself.
            self._thread.shutdown(wait=False)
            self._thread = None
        self._closed = True
        self._spill(self._drain())  # anything that slipped in as the worker ended

    def _drain(self) -> list[Record]:
        with self._lock:
            # The interrupted batch may still commit in its thread; spilling it too is
            # harmless because writing is idempotent by request_id.
            left = self._current + list(self._queue) + list(self._overflow)
            self._finished = self._submitted  # spilled now, or lost and logged
            self._last_of.clear()
            self._pending.clear()
            self._current = []
            self._queue.clear()
            self._overflow.clear()
            return left

    def _spill(self, records: list[Record]) -> None:
        if not records:
            return
        if self.spill_path is None:
            log.error(
                "recorder: no spill file; lost records of requests %s",
                _ids(records),
            )
            return
        try:
            make_private_dir(self.spill_path.parent)
            fd = open_private(self.spill_path, os.O_WRONLY | os.O_APPEND)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                for record in records:
                    fh.write(json.dumps(record, default=str) + "\n")
        except OSError:
            log.exception(
                "recorder: cannot write %s; lost records of requests %s",
                self.spill_path,
                _ids(records),
            )
            return
        log.error(
            "recorder: %d records saved to %s for the next start", len(records), self.spill_path
        )

    def _read_spill(self) -> list[Record]:
        path = self.spill_path
        if path is None:
            return []
        # The spill file is renamed while its records are replayed and deleted once the
        # queue has been empty; after a crash in between, both files are read again
        # (harmless: writing is idempotent by request_id).
        replay = path.with_name(path.name + ".replay")
        records: list[Record] = []
        if path.exists():
            if replay.exists():
                fd = open_private(replay, os.O_WRONLY | os.O_APPEND)
                with os.fdopen(fd, "a", encoding="utf-8") as out:
                    out.write(path.read_text("utf-8"))
                path.unlink()
            else:
                path.rename(replay)
        if replay.exists():
            lines = replay.read_text("utf-8").splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            self._replay_file = replay
            log.warning("recorder: %d records from %s queued again", len(records), path)
        return records

    def _forget_replay_file(self) -> None:
        if self._replay_file is not None:
            self._replay_file.unlink(missing_ok=True)
            self._replay_file = None
