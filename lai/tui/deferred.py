"""DeferredClient: the first frame must not wait for the store's imports.

Building a real client imports SQLAlchemy, Alembic, Pillow and the engine (most of a
second on a small server). ``lai`` decides attached or embedded with a bare socket
probe, draws the UI at once with this stand-in, and builds the real client in a thread
when the app starts. Every call waits for it; a failure to build is a ClientError that
each pane shows like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lai.engine.types import Failure, InFlight, ProviderSnapshot, Queued

if TYPE_CHECKING:
    from lai.store.keyusage import KeyLimits
    from lai.store.stats import UsageReport
from lai.tui.client import (
    Attachment,
    ChatEvent,
    ClientError,
    ConversationList,
    LaiClient,
    LimitsEdit,
    Mode,
    NewKey,
)


class DeferredClient:
    """A :class:`LaiClient` whose real implementation ``factory`` builds in a thread."""

    def __init__(self, mode: Mode, location: str, factory: Callable[[], LaiClient]) -> None:
        self.mode = mode
        self.location = location
        self._factory = factory
        self._client: LaiClient | None = None
        self._failure: ClientError | None = None
        self._lock = asyncio.Lock()

    async def _real(self) -> LaiClient:
        async with self._lock:
            if self._failure is not None:  # building again would fail the same way
                raise self._failure
            if self._client is None:
                try:
                    client = await asyncio.to_thread(self._factory)
                    await client.start()
                except ClientError as exc:
                    self._failure = exc
                    raise
                except Exception as exc:  # a bad database URL, a missing driver...
                    self._failure = ClientError(f"lai could not start: {exc}")
                    raise self._failure from None
                self._client = client
            return self._client

    async def start(self) -> None:
        await self._real()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def handover_request(self) -> int | None:
        # Before the real client is up this TUI holds no engine: nothing to hand over.
        return None if self._client is None else await self._client.handover_request()

    async def decline_handover(self) -> None:
        if self._client is not None:
            await self._client.decline_handover()

    async def hand_over(self) -> LaiClient:
        return await (await self._real()).hand_over()

    async def discard_attachments(self, conversation_id: str, message_id: str) -> None:
        await (await self._real()).discard_attachments(conversation_id, message_id)

    def image_path(self, ref: Any) -> str:
        return str(ref) if self._client is None else self._client.image_path(ref)

    # -- everything else waits for the real client

    async def providers(self) -> list[ProviderSnapshot]:
        return await (await self._real()).providers()

    async def in_flight(self) -> list[InFlight] | None:
        return await (await self._real()).in_flight()

    async def reload_config(self) -> list[str]:
        return await (await self._real()).reload_config()

    async def queued(self) -> list[Queued]:
        return await (await self._real()).queued()

    async def failures(self) -> list[Failure]:
        return await (await self._real()).failures()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async for event in (await self._real()).events():
            yield event

    async def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        return await (await self._real()).set_enabled(provider_id, enabled)

    async def check(self, provider_id: str) -> ProviderSnapshot:
        return await (await self._real()).check(provider_id)

    async def models(self) -> list[dict[str, Any]]:
        return await (await self._real()).models()

    async def chat(
        self, body: dict[str, Any], *, conversation_id: str, display_name: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        client = await self._real()
        async for event in client.chat(body, conversation_id=conversation_id,
                                       display_name=display_name):
            yield event

    async def load_attachment(self, path: str) -> Attachment:
        return await (await self._real()).load_attachment(path)

    async def save_attachments(
        self, conversation_id: str, message_id: str, attachments: list[Attachment]
    ) -> list[dict[str, Any]]:
        return await (await self._real()).save_attachments(conversation_id, message_id,
                                                          attachments)

    async def conversations(self, *, q: str | None, limit: int, offset: int,
                            filters: dict[str, str] | None = None) -> ConversationList:
        return await (await self._real()).conversations(q=q, limit=limit, offset=offset,
                                                        filters=filters)

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        return await (await self._real()).conversation(conversation_id)

    async def rename_conversation(self, conversation_id: str, name: str | None) -> None:
        await (await self._real()).rename_conversation(conversation_id, name)

    async def delete_conversation(self, conversation_id: str) -> None:
        await (await self._real()).delete_conversation(conversation_id)

    async def save_provider(self, provider_id: str, values: dict[str, Any]) -> Path:
        return await (await self._real()).save_provider(provider_id, values)

    async def usage(self, *, days: int, by: str) -> UsageReport:
        return await (await self._real()).usage(days=days, by=by)

    async def keys(self) -> list[dict[str, Any]]:
        return await (await self._real()).keys()

    async def create_key(
        self, name: str, *, expires: str | None, scopes: list[str], priority: int | None
    ) -> NewKey:
        return await (await self._real()).create_key(name, expires=expires, scopes=scopes,
                                                     priority=priority)

    async def rotate_key(self, prefix: str, *, grace: str) -> NewKey:
        return await (await self._real()).rotate_key(prefix, grace=grace)

    async def set_key_enabled(self, prefix: str, enabled: bool) -> None:
        await (await self._real()).set_key_enabled(prefix, enabled)

    async def delete_key(self, prefix: str) -> None:
        await (await self._real()).delete_key(prefix)

    async def key_limits(self) -> list[KeyLimits]:
        return await (await self._real()).key_limits()

    async def update_key_limits(self, name_or_prefix: str, edit: LimitsEdit
                                ) -> list[dict[str, Any]]:
        return await (await self._real()).update_key_limits(name_or_prefix, edit)
