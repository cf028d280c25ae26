"""Conversations, keys and images straight from the shared store, for both clients.

The repository functions are blocking; each call runs in a worker thread so the UI never
waits on the database. Store and validation errors become :class:`ClientError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from lai.config.edit import set_provider_fields
from lai.config.models import Settings
from lai.durations import parse_duration
from lai.errors import LaiError
from lai.store import conversations as repo
from lai.store import keys as keyrepo
from lai.store.db import Store
from lai.store.images import ImageStore
from lai.store.keyquota import PERIODS, parse_budget, parse_limit
from lai.store.keyusage import KeyLimits, LimitUse, key_limits, keys_usage
from lai.store.stats import UsageReport, usage_stats
from lai.tui.attach import read_attachment
from lai.tui.client import Attachment, ClientError, ConversationList, LimitsEdit, NewKey

T = TypeVar("T")


STORE_ERRORS = (LaiError, ValueError, SQLAlchemyError)


def client_error(exc: BaseException) -> ClientError:
    """A store, validation or lai error as the ClientError the TUI shows."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, LaiError):
        return ClientError.from_lai(exc)
    if isinstance(exc, SQLAlchemyError):
        # The driver's first line says what is wrong (locked, unreachable, no table).
        orig = getattr(exc, "orig", None)
        text = (str(orig if orig is not None else exc).splitlines() or [""])[0]
        return ClientError(f"The database failed: {text}")
    return ClientError(str(exc), type="invalid_request_error")


def key_dict(record: keyrepo.KeyRecord, now: datetime,
             usage: Sequence[LimitUse] = ()) -> dict[str, Any]:
    """A key as the keys pane shows it: ``to_dict`` plus a status for people and the use
    of its rpm, tpm and budgets (``usage``)."""
    out = record.to_dict(now)
    out["status_text"] = record.status_text(now)
    out["usage"] = [u.to_dict() for u in usage]
    return out


LIMIT_MINIMUM = {"max_concurrent": 1, "max_queued": 0, "rpm": 1, "tpm": 1}
"""The least value each numeric key limit takes (as ``lai keys update`` checks)."""


def parse_limits_edit(edit: LimitsEdit) -> tuple[dict[str, int | None],
                                                 dict[str, float | None]]:
    """The form's texts as ``update_key``'s limits and budgets, with the parsers of
    ``lai keys update`` (empty or ``none``: no limit). Raises ValueError naming the
    field, so a bad value stores nothing."""
    limits: dict[str, int | None] = {}
    for name, text in edit.limits.items():
        if name not in LIMIT_MINIMUM:
            raise ValueError(f"unknown key limit {name!r}")
        limits[name] = parse_limit(text or "none", name, minimum=LIMIT_MINIMUM[name])
    budgets: dict[str, float | None] = {}
    for period, text in edit.budgets.items():
        if period not in PERIODS:
            raise ValueError(f"unknown budget period {period!r}")
        _, budgets[period] = parse_budget(f"{text.strip() or 'none'}/{period}",
                                          label=f"budget per {period}")
    return limits, budgets


class StoreAccess:
    """The store half of a client: conversations, keys and images."""

    def __init__(self, store: Store, settings: Settings, *,
                 config_path: Path | None = None) -> None:
        self.store = store
        self.images = ImageStore.from_settings(settings.server)
        self._settings = settings
        self.config_path = config_path
        """The file provider edits are saved to (None: started without one)."""

    async def _ready(self) -> None:
        """Wait until the store may be used (the embedded client migrates it first)."""

    async def _settle(self, conversation_id: str | None) -> None:
        """Wait until the requests the engine already answered (of ``conversation_id``,
        else all) are in the store, so a read right after a chat sees it."""

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        await self._ready()
        return await self._blocking(fn, *args, **kwargs)

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in a worker thread; its errors become ClientError."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except STORE_ERRORS as exc:
            raise client_error(exc) from None

    # -- conversations

    async def conversations(self, *, q: str | None, limit: int, offset: int,
                            filters: dict[str, str] | None = None) -> ConversationList:
        def page() -> ConversationList:
            got = repo.list_conversations(self.store, q=q, limit=limit, offset=offset,
                                          filters=filters)
            total = repo.count_conversations(self.store, q=q, filters=filters)
            return ConversationList(got.data, got.has_more, total)

        await self._settle(None)
        return await self._call(page)

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        await self._settle(conversation_id)
        return await self._call(repo.get_conversation, self.store, conversation_id)

    async def rename_conversation(self, conversation_id: str, name: str | None) -> None:
        await self._settle(conversation_id)
        await self._call(repo.rename_conversation, self.store, conversation_id, name)

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._settle(conversation_id)
        await self._call(repo.delete_conversation, self.store, conversation_id)
        # The embedded runtime's hook may have done it already; this is idempotent.
        await self._blocking(self.images.delete_conversation, conversation_id)

    # -- config

    async def save_provider(self, provider_id: str, values: dict[str, Any]) -> Path:
        """Write ``values`` (e.g. ``{"enabled": False}``) into the provider's table of the
        config file, comments and layout kept; answers the file's path."""
        path = self.config_path
        if path is None:
            raise ClientError("lai was not started from a config file, so there is no "
                              "file to save to.")
        await self._blocking(set_provider_fields, path, provider_id, values)
        return path

    # -- usage

    async def usage(self, *, days: int, by: str) -> UsageReport:
        return await self._call(usage_stats, self.store, self._settings, days=days,
                                by=by)  # type: ignore[arg-type]

    # -- keys

    async def keys(self) -> list[dict[str, Any]]:
        now = datetime.now(UTC)

        def read() -> list[dict[str, Any]]:
            records = keyrepo.list_keys(self.store)
            uses = keys_usage(self.store, records, now)
            return [key_dict(r, now, uses.get(r.id, ())) for r in records]

        await self._settle(None)
        return await self._call(read)

    async def key_limits(self) -> list[KeyLimits]:
        now = datetime.now(UTC)

        def read() -> list[KeyLimits]:
            return key_limits(self.store, keyrepo.list_keys(self.store), now)

        # The requests already answered count: the recorder stores them first.
        await self._settle(None)
        return await self._call(read)

    async def update_key_limits(self, name_or_prefix: str, edit: LimitsEdit
                                ) -> list[dict[str, Any]]:
        def update() -> list[dict[str, Any]]:
            limits, budgets = parse_limits_edit(edit)
            if not limits and not budgets:
                raise ValueError("Nothing changed.")
            records = keyrepo.update_key(self.store, name_or_prefix, limits=limits,
                                         budgets=budgets)
            now = datetime.now(UTC)
            return [key_dict(r, now) for r in records]

        return await self._call(update)

    async def create_key(
        self, name: str, *, expires: str | None, scopes: list[str], priority: int | None
    ) -> NewKey:
        def create() -> NewKey:
            expires_in = parse_duration(expires) if expires else None
            issued = keyrepo.create_key(self.store, name, expires_in=expires_in,
                                        scopes=scopes, priority=priority)
            return NewKey(key_dict(issued.record, datetime.now(UTC)), issued.raw_key)

        return await self._call(create)

    async def rotate_key(self, prefix: str, *, grace: str) -> NewKey:
        def rotate() -> NewKey:
            issued = keyrepo.rotate_key(self.store, prefix, grace=parse_duration(grace))
            return NewKey(key_dict(issued.record, datetime.now(UTC)), issued.raw_key)

        return await self._call(rotate)

    async def set_key_enabled(self, prefix: str, enabled: bool) -> None:
        if enabled:
            await self._call(keyrepo.enable_key, self.store, prefix)
        else:
            await self._call(keyrepo.revoke_keys, self.store, prefix)

    async def delete_key(self, prefix: str) -> None:
        await self._call(keyrepo.delete_keys, self.store, prefix)

    # -- images

    async def load_attachment(self, path: str) -> Attachment:
        return await self._blocking(read_attachment, path, self.images)

    async def save_attachments(
        self, conversation_id: str, message_id: str, attachments: list[Attachment]
    ) -> list[dict[str, Any]]:
        def save() -> list[dict[str, Any]]:
            return [self.images.save_sync(conversation_id, message_id, a.filename, a.data)
                    for a in attachments]

        return await self._blocking(save)

    async def discard_attachments(self, conversation_id: str, message_id: str) -> None:
        await self._blocking(self.images.delete_message, conversation_id, message_id)

    def image_path(self, ref: Any) -> str:
        if isinstance(ref, dict) and isinstance(ref.get("path"), str):
            return str(Path(self.images.root) / ref["path"])
        if isinstance(ref, dict) and ref.get("filename"):
            parts = (ref.get("conversation_id"), ref.get("message_id"), ref["filename"])
            return str(Path(self.images.root).joinpath(*(str(p) for p in parts)))
        return str(ref)
