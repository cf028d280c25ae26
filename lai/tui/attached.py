"""AttachedClient: a ``lai proxy`` is running, so the TUI talks to it.

Live state, events, provider toggles and chat go over the admin unix socket
(``data_dir/lai.sock``, no key needed: whoever can open it can read the database), so
the proxy's engine counts every slot. Conversations and keys go through the shared store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from lai.config.models import Settings
from lai.engine.sse import SSEDecoder
from lai.engine.types import Failure, InFlight, ProviderSnapshot, Queued
from lai.store.db import Store
from lai.tui.chatstream import ChatStreamReader
from lai.tui.client import (
    ChatEvent,
    ChatStarted,
    ClientError,
    LaiClient,
    Mode,
    failure_from_dict,
    provider_from_dict,
    queued_from_dict,
)
from lai.tui.probe import socket_path
from lai.tui.storeclient import StoreAccess

IN_FLIGHT_FIELDS = ("request_id", "key_name", "model_id", "provider_id", "started_at",
                    "streaming", "completion_tokens")


class AttachedClient(StoreAccess):
    """A :class:`~lai.tui.client.LaiClient` over a running proxy's admin socket."""

    mode: Mode = "attached"

    def __init__(self, settings: Settings, store: Store, *, sock: Path | None = None,
                 config_path: Path | None = None) -> None:
        super().__init__(store, settings, config_path=config_path)
        self.settings = settings
        self.socket = sock or socket_path(settings)
        self.location = str(self.socket)
        self.http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
            base_url="http://lai",
            # Chat answers may pause long between tokens; the proxy's own read_timeout
            # ends a stuck upstream, so the TUI only bounds connecting.
            timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0),
            trust_env=False,
        )

    async def start(self) -> None:
        """Nothing to start: the proxy runs the engine and has migrated the store."""

    async def close(self) -> None:
        await self.http.aclose()

    async def handover_request(self) -> int | None:
        return None  # the proxy runs the engine: there is nothing to hand over

    async def decline_handover(self) -> None:
        pass

    async def hand_over(self) -> LaiClient:
        raise ClientError("This TUI is attached to the proxy already.")

    # -- HTTP

    def _unreachable(self, exc: Exception) -> ClientError:
        return ClientError(f"The lai proxy at {self.socket} is not reachable "
                           f"({type(exc).__name__}: {exc or 'no answer'}).")

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            resp = await self.http.request(method, url, timeout=10.0, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            raise ClientError.from_body(body, resp.status_code)
        return body

    async def _settle(self, conversation_id: str | None) -> None:
        # The proxy's recorder holds the newest requests for up to its linger; ask it to
        # store them before reading the database. A proxy that cannot is read anyway.
        params = {"conversation_id": conversation_id} if conversation_id else {}
        try:
            await self.http.post("/admin/flush", params=params, timeout=10.0)
        except httpx.HTTPError:
            pass

    # -- board

    async def providers(self) -> list[ProviderSnapshot]:
        body = await self._json("GET", "/v1/providers")
        return [provider_from_dict(p) for p in body["data"]]

    async def in_flight(self) -> list[InFlight] | None:
        body = await self._json("GET", "/admin/requests")
        return [InFlight(**{k: f[k] for k in IN_FLIGHT_FIELDS}) for f in body["data"]]

    async def reload_config(self) -> list[str]:
        body = await self._json("POST", "/admin/config/reload")
        return [str(c) for c in body.get("changes") or ()]

    async def queued(self) -> list[Queued]:
        body = await self._json("GET", "/admin/queue")
        return [queued_from_dict(q) for q in body["data"]]

    async def failures(self) -> list[Failure]:
        body = await self._json("GET", "/admin/failures")
        return [failure_from_dict(f) for f in body["data"]]

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        decoder = SSEDecoder()
        try:
            async with self.http.stream("GET", "/admin/events") as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    raise ClientError.from_body(_loads(body), resp.status_code)
                async for chunk in resp.aiter_bytes():
                    for _name, data in decoder.feed(chunk):
                        event = _loads(data)
                        if isinstance(event, dict) and "kind" in event:
                            yield event
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        raise ClientError(f"The lai proxy at {self.socket} closed the event stream.")

    async def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        action = "enable" if enabled else "disable"
        body = await self._json("POST", f"/admin/providers/{provider_id}/{action}")
        return provider_from_dict(body)

    async def check(self, provider_id: str) -> ProviderSnapshot:
        body = await self._json("POST", f"/admin/providers/{provider_id}/check")
        return provider_from_dict(body)

    async def models(self) -> list[dict[str, Any]]:
        body = await self._json("GET", "/v1/models")
        return list(body["data"])

    # -- chat

    async def chat(
        self, body: dict[str, Any], *, conversation_id: str, display_name: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        headers = {"X-Source": "tui", "X-Conversation-ID": conversation_id}
        if display_name:
            headers["X-Display-Name"] = display_name
        try:
            async with self.http.stream("POST", "/v1/chat/completions", json=body,
                                        headers=headers) as resp:
                if resp.status_code != 200:
                    raise ClientError.from_body(_loads(await resp.aread()), resp.status_code)
                reader = ChatStreamReader(resp.headers.get("x-provider"),
                                          resp.headers.get("x-model"))
                yield ChatStarted(reader.provider or "?", reader.model or "?")
                async for chunk in resp.aiter_bytes():
                    for event in reader.feed(chunk):
                        yield event
                for event in reader.close():
                    yield event
                yield reader.finish()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
