"""Bounded data: the retention sweep of ``server.retention_days`` and
``server.content_retention_days``.

``sweep(store, now=...)`` deletes requests (by ``started_at``) and conversations (by
``updated_at``, their last activity: with their messages, then their image folders
through ``store.on_conversation_deleted``) older than ``retention_days``, and removes the
text and tool calls of messages older than ``content_retention_days`` (the rows, token
counts and ``requests`` stay, so ``lai stats`` does not change). It works in batches, one
short write transaction each with a pause between them, so that the recorder's writes get
the SQLite write lock in between, however much there is to delete.

:class:`RetentionSweeper` runs it in a worker thread at start and then hourly, for the
runtime; afterwards it hands SQLite's freed pages back to the disk
(``lai.store.space.reclaim_free_pages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from lai.config.models import ServerSettings
from lai.engine.clock import Clock, SystemClock
from lai.store.db import Store
from lai.store.models import Conversation, Message, RequestRecord
from lai.store.space import reclaim_free_pages

log = logging.getLogger("lai.store.retention")

SWEEP_INTERVAL = 3600.0
"""Seconds between two sweeps."""
REQUEST_BATCH = 1000
"""``requests`` rows deleted per transaction."""
CONVERSATION_BATCH = 100
"""Conversations (with all their messages) deleted per transaction."""
MESSAGE_BATCH = 500
"""Messages whose content is removed per transaction."""
PAUSE = 0.02
"""Seconds between two batches: a writer waiting on SQLite's lock gets it meanwhile."""

_CONVERSATIONS: sa.Table = Conversation.__table__  # type: ignore[attr-defined]
_MESSAGES: sa.Table = Message.__table__  # type: ignore[attr-defined]
_REQUESTS: sa.Table = RequestRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep removed."""

    requests: int = 0
    conversations: int = 0
    messages_cleared: int = 0
    """Messages whose text and tool calls were removed (the rows stay)."""
    stopped: bool = False
    """The sweep was asked to stop before it was done; the next one carries on."""

    @property
    def changed(self) -> bool:
        return bool(self.requests or self.conversations or self.messages_cleared)


def _cutoff(now: datetime, days: int) -> datetime:
    return now.astimezone(UTC) - timedelta(days=days)


def _rowcount(result: sa.Result[Any]) -> int:
    # DELETE and UPDATE answer a CursorResult, which knows how many rows they touched.
    return int(cast("sa.CursorResult[Any]", result).rowcount)


def _batches(stop: threading.Event, pause: float) -> Any:
    """Yield until ``stop`` is set, pausing between iterations (not before the first)."""
    first = True
    while not stop.is_set():
        if not first and stop.wait(pause):
            return
        first = False
        yield


def delete_requests_before(
    store: Store, cutoff: datetime, *, batch_size: int = REQUEST_BATCH,
    pause: float = PAUSE, stop: threading.Event | None = None,
) -> int:
    """Delete ``requests`` rows that started before ``cutoff``; answers how many."""
    stop = stop or threading.Event()
    total = 0
    started = _REQUESTS.c.started_at
    for _ in _batches(stop, pause):
        oldest = (sa.select(_REQUESTS.c.id).where(started < cutoff)
                  .order_by(started).limit(batch_size))
        with store.write_session() as session:
            n = _rowcount(session.execute(sa.delete(_REQUESTS).where(_REQUESTS.c.id.in_(oldest))))
        total += n
        if n < batch_size:
            break
    return total


def delete_conversations_before(
    store: Store, cutoff: datetime, *, batch_size: int = CONVERSATION_BATCH,
    pause: float = PAUSE, stop: threading.Event | None = None,
) -> int:
    """Delete conversations last active before ``cutoff`` with their messages, then run
    the store's deletion hooks (image folders) for each; answers how many."""
    stop = stop or threading.Event()
    total = 0
    updated = _CONVERSATIONS.c.updated_at
    for _ in _batches(stop, pause):
        with store.write_session() as session:
            # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already excludes writers):
            # a conversation the recorder is extending right now is skipped, and either
            # kept (it is no longer old) or deleted by the next sweep.
            ids = list(session.execute(
                sa.select(_CONVERSATIONS.c.id).where(updated < cutoff).order_by(updated)
                .limit(batch_size).with_for_update(skip_locked=True)
            ).scalars())
            if ids:
                session.execute(sa.delete(_MESSAGES).where(_MESSAGES.c.conversation_id.in_(ids)))
                session.execute(sa.delete(_CONVERSATIONS).where(_CONVERSATIONS.c.id.in_(ids)))
        for cid in ids:
            store.conversation_deleted(cid)
        total += len(ids)
        if len(ids) < batch_size:
            break
    return total


def remove_content_before(
    store: Store, cutoff: datetime, *, now: datetime, batch_size: int = MESSAGE_BATCH,
    pause: float = PAUSE, stop: threading.Event | None = None,
) -> int:
    """Remove the text and tool calls of messages created before ``cutoff`` (marking them
    with ``content_removed_at = now``); answers how many messages."""
    stop = stop or threading.Event()
    total = 0
    m = _MESSAGES.c
    for _ in _batches(stop, pause):
        # Reads ix_messages_content_removed_at_created_at: only messages still holding text.
        oldest = (sa.select(m.id).where(m.content_removed_at.is_(None), m.created_at < cutoff)
                  .order_by(m.created_at).limit(batch_size))
        with store.write_session() as session:
            n = _rowcount(session.execute(
                sa.update(_MESSAGES).where(m.id.in_(oldest))
                .values(content=None, tool_calls=None, content_removed_at=now)
            ))
        total += n
        if n < batch_size:
            break
    return total


def sweep(
    store: Store,
    *,
    now: datetime,
    retention_days: int | None,
    content_retention_days: int | None,
    pause: float = PAUSE,
    stop: threading.Event | None = None,
) -> SweepResult:
    """Apply both retention settings as of ``now`` (each off when None). Blocking.

    Raises what the database raises; what was committed before stays committed, and the
    next sweep carries on from there.
    """
    stop = stop or threading.Event()
    requests = conversations = cleared = 0
    if retention_days is not None:
        cutoff = _cutoff(now, retention_days)
        conversations = delete_conversations_before(store, cutoff, pause=pause, stop=stop)
        requests = delete_requests_before(store, cutoff, pause=pause, stop=stop)
    if content_retention_days is not None:
        cleared = remove_content_before(
            store, _cutoff(now, content_retention_days), now=now, pause=pause, stop=stop)
    return SweepResult(requests, conversations, cleared, stopped=stop.is_set())


class RetentionSweeper:
    """Runs :func:`sweep` for a runtime: at start, then every ``interval`` seconds, in a
    worker thread. Building one does no IO; without retention settings it does nothing."""

    def __init__(
        self,
        store: Store,
        *,
        retention_days: int | None = None,
        content_retention_days: int | None = None,
        clock: Clock | None = None,
        interval: float = SWEEP_INTERVAL,
        pause: float = PAUSE,
    ) -> None:
        self.store = store
        self.retention_days = retention_days
        self.content_retention_days = content_retention_days
        self.clock = clock or SystemClock()
        self.interval = interval
        self.pause = pause
        self.last: SweepResult | None = None
        """The result of the last finished sweep."""
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: asyncio.Future[SweepResult] | None = None

    @classmethod
    def from_settings(
        cls, store: Store, server: ServerSettings, *, clock: Clock | None = None
    ) -> RetentionSweeper:
        """A sweeper with ``[server]``'s retention settings."""
        return cls(store, retention_days=server.retention_days,
                   content_retention_days=server.content_retention_days, clock=clock)

    @property
    def enabled(self) -> bool:
        return self.retention_days is not None or self.content_retention_days is not None

    def sweep_once(self) -> SweepResult:
        """One sweep as of the clock's time, then give SQLite's freed pages back. Blocking."""
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        result = sweep(
            self.store, now=now, retention_days=self.retention_days,
            content_retention_days=self.content_retention_days, pause=self.pause,
            stop=self._stop,
        )
        if result.changed:
            log.info("retention sweep: deleted %d requests and %d conversations, removed the "
                     "content of %d messages", result.requests, result.conversations,
                     result.messages_cleared)
            reclaim_free_pages(self.store, pause=self.pause, stop=self._stop)
        self.last = result
        return result

    def start(self) -> None:
        """Start sweeping in the background (only when a retention setting is on)."""
        if self.enabled and self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._sweep_forever(), name="lai-retention-sweep")

    async def close(self) -> None:
        """Stop sweeping: the batch in progress finishes (the thread is waited for, so the
        store can be closed after this), the rest is left to the next start."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running, self._running = self._running, None
        if running is not None:
            with contextlib.suppress(Exception):
                await running

    async def _sweep_forever(self) -> None:
        while True:
            self._running = asyncio.ensure_future(asyncio.to_thread(self.sweep_once))
            try:
                # Shielded: cancelling this task must not abandon the thread's result.
                await asyncio.shield(self._running)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad hour for the database must not end sweeping for good
                log.exception("retention sweep failed")
            self._running = None
            await self.clock.sleep(self.interval)
