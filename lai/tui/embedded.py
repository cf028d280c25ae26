"""EmbeddedClient: no proxy is running, so the TUI runs the runtime in this process.

The engine checks providers and serves the chat pane; the store (migrated to head first)
keeps the conversations, written by the same recorder the proxy uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lai import enginelock
from lai.engine.events import follow
from lai.engine.types import Failure, InFlight, ProviderSnapshot, Queued, RequestContext
from lai.errors import LaiError
from lai.runtime import Runtime, build_runtime
from lai.tui.chatstream import ChatStreamReader
from lai.tui.client import ChatEvent, ChatStarted, ClientError, LaiClient, Mode
from lai.tui.probe import proxy_answers, socket_path
from lai.tui.storeclient import STORE_ERRORS, StoreAccess, client_error

EVENT_QUEUE_SIZE = 1000
HANDOVER_ATTACH_TIMEOUT = 60.0
"""Seconds a TUI that handed over waits for the proxy to answer before routing again."""
HANDOVER_POLL = 0.2
HANDOVER_DRAIN = 5.0
"""Seconds a hand-over waits for stopped chat answers to free their slots."""


class EmbeddedClient(StoreAccess):
    """A :class:`~lai.tui.client.LaiClient` over an in-process runtime."""

    mode: Mode = "embedded"

    def __init__(self, runtime: Runtime, *, config_path: Path | str) -> None:
        if runtime.store is None:
            raise ValueError("the embedded TUI needs a runtime with a store")
        super().__init__(runtime.store, runtime.settings, config_path=Path(config_path))
        self.runtime = runtime
        self.location = str(config_path)
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._lock: enginelock.EngineLock | None = None

    async def start(self) -> None:
        """Migrate the store and start the runtime (health checks, recorder)."""
        async with self._start_lock:
            if self._started:
                return
            # One engine per data dir: a proxy (starting, or not answering its socket)
            # or another embedded TUI already routes to these boxes.
            try:
                self._lock = enginelock.acquire(
                    self.runtime.settings.server.data_dir, "tui",
                    hint="; quit that one, or start `lai proxy` and open `lai` to attach.")
            except (enginelock.EngineLocked, OSError) as exc:
                raise ClientError(getattr(exc, "message", None) or str(exc)) from None
            # Runtime.start migrates the store to head before anything reads it.
            try:
                await self.runtime.start()
            except BaseException as exc:
                self._lock.release()  # a failed start runs no engine
                if isinstance(exc, STORE_ERRORS):
                    raise client_error(exc) from None
                raise
            self._started = True

    # -- hand-over

    async def handover_request(self) -> int | None:
        if not self._started or self._closed:
            return None
        return await asyncio.to_thread(enginelock.handover_request,
                                       self.runtime.settings.server.data_dir)

    async def decline_handover(self) -> None:
        await asyncio.to_thread(enginelock.withdraw_handover,
                                self.runtime.settings.server.data_dir)

    async def hand_over(self) -> LaiClient:
        from lai.store.db import open_store
        from lai.tui.attached import AttachedClient

        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        # The chat pane stops its answer (LaiApp.handing_over); let it close its slot and
        # reach the recorder before the engine goes.
        for _ in range(round(HANDOVER_DRAIN / HANDOVER_POLL)):
            if not self.runtime.engine.in_flight():
                break
            await asyncio.sleep(HANDOVER_POLL)
        # The request stays: the proxy takes the lock, then removes it.
        await self.close()
        sock = socket_path(settings)
        deadline = loop.time() + HANDOVER_ATTACH_TIMEOUT
        while loop.time() < deadline:
            if await asyncio.to_thread(proxy_answers, sock):
                client = AttachedClient(settings, open_store(settings.server.database_url),
                                        sock=sock, config_path=self.config_path)
                await client.start()
                return client
            await asyncio.sleep(HANDOVER_POLL)
        # The proxy did not come up (a port in use, a crash): route here again rather than
        # leave the boxes unserved. Refused (a ClientError) if the proxy holds the lock.
        again = EmbeddedClient(build_runtime(settings),
                               config_path=self.config_path or self.location)
        await again.start()
        return again

    async def _ready(self) -> None:
        await self.start()

    async def _settle(self, conversation_id: str | None) -> None:
        await self.start()
        if self.runtime.recorder is not None:
            await self.runtime.recorder.settle(conversation_id)

    async def close(self) -> None:
        """Stop the runtime; the recorder writes what it holds first. Then the engine
        lock is given up (a proxy may start)."""
        self._closed = True
        try:
            await self.runtime.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    # -- board

    async def providers(self) -> list[ProviderSnapshot]:
        return self.runtime.engine.providers()

    async def in_flight(self) -> list[InFlight] | None:
        return self.runtime.engine.in_flight()

    async def reload_config(self) -> list[str]:
        result = await self.runtime.reload()
        if not result.ok:
            raise ClientError(result.error or "The config was not reloaded.",
                              type="invalid_request_error", code="config_invalid")
        return list(result.changes)

    async def queued(self) -> list[Queued]:
        return self.runtime.engine.queued()

    async def failures(self) -> list[Failure]:
        return self.runtime.engine.failures.recent()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        engine = self.runtime.engine
        live = follow(engine.events, lambda: {
            "kind": "snapshot", "providers": [p.to_dict() for p in engine.providers()]
        }, size=EVENT_QUEUE_SIZE)
        async for item in live:
            if item is not None:
                yield item

    async def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        try:
            return self.runtime.engine.set_enabled(provider_id, enabled)
        except LaiError as exc:
            raise ClientError.from_lai(exc) from None

    async def check(self, provider_id: str) -> ProviderSnapshot:
        try:
            return await self.runtime.engine.check(provider_id)
        except LaiError as exc:
            raise ClientError.from_lai(exc) from None

    async def models(self) -> list[dict[str, Any]]:
        return self.runtime.engine.models()

    # -- chat

    async def chat(
        self, body: dict[str, Any], *, conversation_id: str, display_name: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        ctx = RequestContext(conversation_id=conversation_id, source="tui",
                             display_name=display_name)
        try:
            stream = await self.runtime.engine.stream(body, ctx)
        except LaiError as exc:
            raise ClientError.from_lai(exc) from None
        # aclose in finally: a stopped answer (escape) frees the slot and is recorded.
        try:
            reader = ChatStreamReader(stream.provider_id, stream.model_id)
            yield ChatStarted(stream.provider_id, stream.model_id)
            async for chunk in stream:
                for event in reader.feed(chunk):
                    yield event
            for event in reader.close():
                yield event
            yield reader.finish()
        finally:
            await stream.aclose()
