"""The runtime: everything one process needs to serve, built by a factory, closed once.

``build_runtime(settings)`` makes the one ``httpx.AsyncClient`` of the process, the
engine, and (when asked) the store and its recorder. Both faces use it: ``lai proxy``
starts it inside Quart's ``while_serving``; the TUI in embedded mode starts it itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from lai.config.models import Settings
from lai.engine.clock import Clock, SystemClock
from lai.engine.engine import Engine
from lai.reload import Reloader, ReloadResult
from lai.store.db import Store, open_store
from lai.store.images import ImageStore
from lai.store.keyservice import KeyService
from lai.store.keyusage import KeyUsage
from lai.store.private import make_private_dir, tighten_tree
from lai.store.recorder import Recorder
from lai.store.retention import RetentionSweeper
from lai.transport import NoCookies, PoolTransport

log = logging.getLogger("lai")


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The process's one upstream client. Per-provider timeouts are set per request.

    The pool holds at least twice the sum of every provider's slots: a request in flight
    uses one connection and a health probe one per provider, so the slots, not the pool,
    limit what goes upstream. A full pool means connections are held by nothing that
    should hold them; the engine reports it as its own 503 (``UpstreamPoolExhausted``).
    """
    total = sum(p.max_concurrent for p in settings.providers) or 10
    limits = httpx.Limits(
        max_connections=max(100, total * 2),
        max_keepalive_connections=max(20, total * 2),
        keepalive_expiry=30.0,
    )
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=30.0),
        # httpx's own pool collapses under concurrency; see lai/transport/__init__.py.
        transport=PoolTransport(limits=limits),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment must not sit between lai and a LAN box
    )
    # Set directly: the ``cookies`` setter would copy it into a plain jar.
    client._cookies = NoCookies()
    return client


@dataclass
class Runtime:
    """What a serving process holds. Attributes are set by ``build_runtime``."""

    settings: Settings
    client: httpx.AsyncClient
    engine: Engine
    clock: Clock
    store: Store | None = None
    """The database (conversations, requests, keys); None for a store-less runtime."""
    recorder: Recorder | None = None
    """Writes every finished request to ``store``, batched, off the event loop."""
    images: ImageStore | None = None
    """Uploaded images (data_dir/images): upload, the engine's image resolver, retention."""
    keys: KeyService | None = None
    """Verifies `lai_` keys (cached) and batches last_used_at; None when server.auth is off."""
    usage: KeyUsage | None = None
    """Keys' use against their rpm, tpm and budgets; checked before each request queues."""
    retention: RetentionSweeper | None = None
    """Deletes what ``server.retention_days`` / ``content_retention_days`` no longer keep."""
    extensions: dict[str, Any] = field(default_factory=dict)
    reloader: Reloader | None = None
    """Reloads ``settings.source`` (SIGHUP, ``lai config reload``, ``watch_config``)."""
    _started: bool = False

    def __post_init__(self) -> None:
        if self.reloader is None:
            self.reloader = Reloader(self)

    async def reload(self) -> ReloadResult:
        """Read the config file again and apply it (see ``lai.reload``)."""
        assert self.reloader is not None
        return await self.reloader.reload()

    async def apply_settings(self, new: Settings) -> list[str]:
        """Serve ``new`` from now on: the engine, auth, image limits. Returns what changed.
        Restart-only keys must already carry their old values (``lai.reload``)."""
        changes = self.engine.reload(new)
        self.settings = new
        if self.images is not None:
            server = new.server
            self.images.max_size = server.max_image_size
            self.images.max_per_message = server.max_images_per_message
            self.images.retention_days = server.images_retention_days
        if new.server.auth and self.keys is None and self.store is not None:
            # Auth turned on by the reload: keys are checked from the next request on.
            self.keys = KeyService(self.store, clock=self.clock)
            if self._started:
                await self.keys.start()
        return changes

    async def start(self) -> None:
        """Start background work (health checks, recorder). Idempotent."""
        if self._started:
            return
        self._started = True
        await asyncio.to_thread(self._make_private)
        if self.store is not None:
            # Every process that touches the store migrates it first; in a thread, since
            # the event loop may already serve something else.
            await asyncio.to_thread(self.store.upgrade)
        if self.recorder is not None:
            self.recorder.attach(self.engine.events)
            await self.recorder.start()
        await self.engine.start()
        if self.keys is not None:
            await self.keys.start()
        if self.images is not None:
            self.images.start()
        if self.retention is not None:
            self.retention.start()
        assert self.reloader is not None
        self.reloader.start_watching()

    def _make_private(self) -> None:
        # Conversations are private: the data dir (and a SQLite file kept elsewhere) is
        # its owner's only, whatever an older version or a restore left (lai.store.private).
        data_dir = self.settings.server.data_dir
        make_private_dir(data_dir)
        tighten_tree(data_dir, self.store.private_paths() if self.store is not None else ())

    def begin_shutdown(self) -> None:
        """Shutdown has started: end the live event streams (``/admin/events``, which
        would otherwise hold the server for its whole graceful timeout). Requests in
        flight go on. Safe to call from any thread, more than once."""
        self.engine.events.end_streams()

    async def close(self) -> None:
        """Stop background work, flush what must be kept, close the HTTP client."""
        self.begin_shutdown()
        if not self._started:
            await self.client.aclose()
            return
        self._started = False
        if self.retention is not None:
            await self.retention.close()  # waits for a batch in progress: before dispose
        assert self.reloader is not None
        await self.reloader.close()
        if self.images is not None:
            await self.images.close()
        await self.engine.close()
        if self.recorder is not None:
            # After the engine, so the requests it let finish are recorded too.
            await self.recorder.close(grace=self.settings.server.shutdown_timeout)
        if self.keys is not None:
            await self.keys.close()  # after the engine: uses by the last requests are kept
        if self.store is not None:
            self.store.dispose()
        await self.client.aclose()


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, store: bool = True
) -> Runtime:
    """Build (not start) a runtime for ``settings``. No IO happens here.

    With ``store`` (the default) it has a store for ``server.database_url``, migrated
    by ``start()``, and a recorder writing every finished request into it.
    Raises ``sqlalchemy.exc.ArgumentError`` for a malformed database URL.
    """
    clock = clock or SystemClock()
    db: Store | None = None
    recorder: Recorder | None = None
    if store:
        db = open_store(settings.server.database_url)
        # Records a shutdown could not write wait here for the next start.
        recorder = Recorder(db, spill_path=settings.server.data_dir / "recorder-spill.jsonl",
                            linger=0.2)
    client = make_http_client(settings)
    images = ImageStore.from_settings(settings.server, clock=clock)
    if db is not None:
        db.on_conversation_deleted.append(images.delete_conversation)
    engine = Engine(settings, client, clock=clock, image_resolver=images.resolve)
    # Without a store, auth has nothing to check keys against: the proxy then refuses
    # every protected request (lai.proxy.auth) rather than opening up.
    keys = KeyService(db, clock=clock) if settings.server.auth and db is not None else None
    usage = KeyUsage(db, clock=clock) if db is not None else None
    if usage is not None:
        engine.admit = usage.admit
        engine.events.subscribe(usage.observe)
    retention = (RetentionSweeper.from_settings(db, settings.server, clock=clock)
                 if db is not None else None)
    return Runtime(settings=settings, client=client, engine=engine, clock=clock, images=images,
                   keys=keys, usage=usage, store=db, recorder=recorder, retention=retention)
