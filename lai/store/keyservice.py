"""The proxy's view of API keys: verification through a short-lived cache, and
``last_used_at`` written in batches rather than per request.

The keys themselves (issuing, rotating, revoking) live in :mod:`lai.store.keys`, the rules
a key is judged by in :mod:`lai.store.keyvalues`, the queries made here in
:mod:`lai.store.keylookup`; :class:`KeyService` only decides when to ask them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from lai.engine.clock import Clock, SystemClock
from lai.errors import ServiceUnavailable
from lai.store.db import Store
from lai.store.keylookup import lookup_key, touch_last_used
from lai.store.keyvalues import KeyInfo, KeyLookup, hash_key, require_format

log = logging.getLogger("lai.keys")

CACHE_TTL = 5.0
"""Seconds a verified (or refused) key is trusted without asking the database again.
A revocation, re-enabling or deletion made by another process (``lai keys revoke``)
therefore takes effect in a running proxy within this many seconds. Expiry and the end
of a grace period are checked on every request and take effect at once."""
FLUSH_INTERVAL = 5.0
"""Seconds between batched ``last_used_at`` writes: the column is at most this stale."""


@dataclass(slots=True)
class _Entry:
    found: KeyLookup
    fresh_until: float
    """Monotonic time after which the database is asked again."""


class KeyService:
    """Verifies keys for the proxy and keeps ``last_used_at`` current, cheaply.

    - A key's row is cached by hash for ``cache_ttl`` seconds (:data:`CACHE_TTL`), found
      or not, so a burst of requests costs one query. A revocation made elsewhere takes
      effect within that delay; :meth:`invalidate` makes it immediate for changes made in
      this process. Expiry and grace are checked against the clock on every request.
    - When the database cannot be reached, a key seen before is judged on its last known
      row; a key never seen gets 503.
    - Successful uses are collected and written every ``flush_interval`` seconds
      (:data:`FLUSH_INTERVAL`) in one UPDATE, and at :meth:`close`.

    The clock is injectable: ``clock.time()`` is the wall clock expiry is judged on,
    ``clock.monotonic()`` times the cache.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        cache_ttl: float = CACHE_TTL,
        flush_interval: float = FLUSH_INTERVAL,
        max_entries: int = 10_000,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.cache_ttl = cache_ttl
        self.flush_interval = flush_interval
        self.max_entries = max_entries
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, asyncio.Task[KeyLookup]] = {}
        self._used: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock: asyncio.Lock | None = None
        self.lookups = 0
        """Database lookups made (for tests and metrics)."""
        self.flushes = 0
        """Batches of ``last_used_at`` written."""

    def now(self) -> datetime:
        """The injected clock's wall time, timezone-aware UTC."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    async def verify(self, raw_key: str | None) -> KeyInfo:
        """The key's info if it may be used now; records the use for ``last_used_at``.

        Raises AuthenticationFailed (missing, malformed, unknown, revoked, expired or
        rotated-out key; the message names at most the prefix) and ServiceUnavailable
        when the database cannot be reached and the key was never seen.
        """
        raw = require_format(raw_key)
        found = await self._get(hash_key(raw))
        now = self.now()
        info = found.check(raw, now)
        self._used[info.id] = now
        return info

    def invalidate(self) -> None:
        """Forget every cached key: the next request of each asks the database."""
        self._cache.clear()

    async def _get(self, key_hash: str) -> KeyLookup:
        entry = self._cache.get(key_hash)
        if entry is not None and self.clock.monotonic() < entry.fresh_until:
            return entry.found
        # One query for a burst of requests with the same key. The query runs in its own
        # task so that a client hanging up does not fail the others waiting on it.
        task = self._loading.get(key_hash)
        if task is None:
            task = asyncio.create_task(self._load(key_hash, entry))
            self._loading[key_hash] = task
            task.add_done_callback(lambda done: self._loaded(key_hash, done))
        return await asyncio.shield(task)

    def _loaded(self, key_hash: str, task: asyncio.Task[KeyLookup]) -> None:
        if self._loading.get(key_hash) is task:
            del self._loading[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here, in case every waiter went away

    async def _load(self, key_hash: str, stale: _Entry | None) -> KeyLookup:
        self.lookups += 1
        try:
            found = await asyncio.to_thread(lookup_key, self.store, key_hash)
        except SQLAlchemyError as exc:
            log.warning("cannot check an API key: database unavailable (%s)",
                        type(exc).__name__)
            if stale is None:
                raise ServiceUnavailable(
                    "Cannot check the API key right now: the database is unavailable.",
                    code="auth_unavailable", retry_after=5,
                ) from None
            found = stale.found  # the last known row, until the database is back
        self._cache[key_hash] = _Entry(found, self.clock.monotonic() + self.cache_ttl)
        self._cache.move_to_end(key_hash)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return found

    # -- last_used_at --------------------------------------------------------------------

    @property
    def pending_uses(self) -> int:
        """Keys whose ``last_used_at`` waits for the next flush."""
        return len(self._used)

    async def flush(self) -> None:
        """Write the collected uses in one UPDATE. On failure they are kept for the next
        flush (and logged); nothing is raised."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if not self._used:
                return
            batch, self._used = self._used, {}
            try:
                await asyncio.to_thread(touch_last_used, self.store, batch)
            except SQLAlchemyError as exc:
                log.warning("could not write last_used_at of %d keys (%s); will retry",
                            len(batch), type(exc).__name__)
                for key_id, at in batch.items():
                    # Newer uses recorded meanwhile win.
                    self._used.setdefault(key_id, at)
                return
            self.flushes += 1

    async def _flush_loop(self) -> None:
        while True:
            # Real time, not the injected clock: a test clock that skips sleeps would spin.
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def start(self) -> None:
        """Start the periodic ``last_used_at`` writer. Idempotent."""
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop(), name="lai-keys-flush")

    async def close(self) -> None:
        """Stop the writer and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
