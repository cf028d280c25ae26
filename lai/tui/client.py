"""The one object the TUI talks to: :class:`LaiClient`, and the values it hands back.

Screens never reach the engine, the proxy or the store themselves; they call a client
handed to the app. Two implementations share this protocol:

- :class:`~lai.tui.attached.AttachedClient` talks to a running ``lai proxy`` over its
  admin unix socket, so one engine counts every slot;
- :class:`~lai.tui.embedded.EmbeddedClient` runs the engine in this process.

Both reach conversations and keys through the shared store. Every method raises
:class:`ClientError` (carrying the OpenAI-shaped message) for anything a user should
read; nothing else is meant to escape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from lai.engine.types import Failure, InFlight, ProviderSnapshot, Queued, ServerLoad
from lai.errors import LaiError

if TYPE_CHECKING:
    from lai.store.keyusage import KeyLimits
    from lai.store.stats import UsageReport

Mode = Literal["attached", "embedded"]


class ClientError(Exception):
    """Something the operator should read: the OpenAI error ``message`` and its code."""

    def __init__(
        self, message: str, *, type: str = "api_error", code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.code = code
        self.status = status

    @classmethod
    def from_lai(cls, exc: LaiError) -> ClientError:
        """The same error as the proxy would have rendered it."""
        return cls(exc.message, type=exc.type, code=exc.code, status=exc.status)

    @classmethod
    def from_body(cls, body: Any, status: int) -> ClientError:
        """From an OpenAI error body ``{"error": {...}}``; anything else gets a plain text."""
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return cls(str(err["message"]), type=str(err.get("type") or "api_error"),
                       code=err.get("code"), status=status)
        return cls(f"The proxy answered HTTP {status}.", status=status)


def provider_from_dict(data: dict[str, Any]) -> ProviderSnapshot:
    """A provider as ``GET /v1/providers`` describes it (missing fields get defaults)."""
    return ProviderSnapshot(
        id=str(data["id"]),
        name=str(data.get("name") or data["id"]),
        type=str(data.get("type") or ""),
        status=data.get("status") or "unknown",
        enabled=bool(data.get("enabled", True)),
        priority=int(data.get("priority") or 0),
        active_requests=int(data.get("active_requests") or 0),
        max_concurrent=int(data.get("max_concurrent") or 0),
        queue_depth=int(data.get("queue_depth") or 0),
        latency_ms=data.get("latency_ms"),
        last_check=data.get("last_check"),
        consecutive_failures=int(data.get("consecutive_failures") or 0),
        last_error=data.get("last_error"),
        models=tuple(data.get("models") or ()),
        warm_models=tuple(data.get("warm_models") or ()),
        server=data.get("server") if isinstance(data.get("server"), str) else None,
        loaded_models=(tuple(str(n) for n in data["loaded_models"])
                       if isinstance(data.get("loaded_models"), list) else None),
        load=ServerLoad.from_dict(data.get("load")),
    )


def queued_from_dict(data: dict[str, Any]) -> Queued:
    """A waiting request as ``GET /admin/queue`` describes it."""
    return Queued(str(data["request_id"]), data.get("key_name"), str(data.get("model") or ""),
                  int(data.get("priority") or 0), int(data.get("position") or 0),
                  float(data.get("since") or 0), float(data.get("waited_ms") or 0),
                  data.get("conversation_id"), _number(data.get("estimated_start_ms")))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def failure_from_dict(data: dict[str, Any]) -> Failure:
    """A failure as ``GET /admin/failures`` describes it."""
    return Failure(float(data.get("at") or 0), str(data.get("request_id") or ""),
                   data.get("provider_id"), data.get("key_name"), str(data.get("model") or ""),
                   data.get("status") or "", data.get("code"), str(data.get("reason") or ""))


# ---------------------------------------------------------------------- chat values


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image read from a path and validated as the upload endpoint would."""

    path: str
    filename: str
    media_type: str
    size: int
    width: int
    height: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChatStarted:
    """The router picked a provider and model; the answer is on its way."""

    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ChatFinished:
    """The end of an answer: who served it and what it cost."""

    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int
    finish_reason: str | None


ChatEvent = ChatStarted | ChatDelta | ChatFinished


@dataclass(frozen=True, slots=True)
class ConversationList:
    """One page of conversations (API dicts, newest first)."""

    data: list[dict[str, Any]]
    has_more: bool
    total: int | None = None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created or rotated: ``secret`` is shown once and never again."""

    key: dict[str, Any]
    secret: str


@dataclass(frozen=True, slots=True)
class LimitsEdit:
    """A change to a key's limits, as typed in the limits form: only the fields changed,
    each a text (empty or ``none`` removes the limit). ``limits`` by ``max_concurrent``,
    ``max_queued``, ``rpm``, ``tpm``; ``budgets`` by period (``day``, ``week``,
    ``month``), in USD. The client checks them as ``lai keys update`` does."""

    limits: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------- the protocol


class LaiClient(Protocol):
    """What the TUI needs from lai. Every method raises ClientError on failure."""

    mode: Mode
    location: str
    """The proxy address (attached) or the config path (embedded), for the header."""

    async def start(self) -> None:
        """Connect or start the embedded runtime. Idempotent."""

    async def close(self) -> None:
        """Release everything ``start`` took."""

    # -- hand-over (an embedded TUI asked by a starting proxy)
    async def handover_request(self) -> int | None:
        """The pid of a ``lai proxy`` waiting for this embedded TUI to hand its engine
        over, else None (always None attached)."""

    async def decline_handover(self) -> None:
        """Say no to the waiting proxy: it exits with its one-line refusal."""

    async def hand_over(self) -> LaiClient:
        """Stop routing (requests in flight finish, the recorder writes what it holds, the
        engine lock is released, so the waiting proxy starts), wait until that proxy
        answers on its admin socket, and answer a started client attached to it. When
        it does not answer in time, the answer is a new embedded client (this TUI routes
        again). Raises ClientError when neither can start."""

    # -- board
    async def providers(self) -> list[ProviderSnapshot]:
        """Every provider's live state, by priority."""

    async def in_flight(self) -> list[InFlight] | None:
        """Requests served right now, or None when only events tell (attached)."""

    async def queued(self) -> list[Queued]:
        """Requests waiting for a slot, in serving order."""

    async def failures(self) -> list[Failure]:
        """The last failed requests and failed-over attempts, newest first."""

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """Engine events as JSON-ready dicts with a ``kind``, a ``snapshot`` first."""

    async def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        """Enable or disable a provider at run time."""

    async def check(self, provider_id: str) -> ProviderSnapshot:
        """Probe a provider now."""

    async def models(self) -> list[dict[str, Any]]:
        """The ``GET /v1/models`` list, ``auto`` first."""

    # -- chat
    def chat(
        self, body: dict[str, Any], *, conversation_id: str, display_name: str | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Stream a chat answer (source ``tui``). Closing the iterator stops the request."""

    async def load_attachment(self, path: str) -> Attachment:
        """Read and validate an image as the upload endpoint would."""

    async def save_attachments(
        self, conversation_id: str, message_id: str, attachments: list[Attachment]
    ) -> list[dict[str, Any]]:
        """Store images for a message; answers its ``image_refs`` (the engine sends them
        to the model as base64)."""

    async def discard_attachments(self, conversation_id: str, message_id: str) -> None:
        """Remove the images ``save_attachments`` stored for a message that was never
        answered, so a failed send leaves nothing on disk."""

    def image_path(self, ref: Any) -> str:
        """Where an ``image_refs`` item lives on disk, for display."""

    # -- conversations
    async def conversations(
        self, *, q: str | None, limit: int, offset: int,
        filters: dict[str, str] | None = None,
    ) -> ConversationList:
        """A page of conversations, newest first, optionally full-text searched and
        filtered (``source``, ``username``, ``key_name``, ``model``: exact values)."""

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        """A conversation with its ``messages``."""

    async def rename_conversation(self, conversation_id: str, name: str | None) -> None:
        """Set or clear its display name."""

    async def delete_conversation(self, conversation_id: str) -> None:
        """Delete it with its messages and images."""

    # -- config
    async def save_provider(self, provider_id: str, values: dict[str, Any]) -> Path:
        """Write ``values`` into the provider's table of the config file (comments and
        layout kept, validated first); answers the file's path. The running engine is
        not changed by this: the caller toggles ``enabled`` live itself."""

    async def reload_config(self) -> list[str]:
        """Make the engine (the proxy's, attached) read its config file again; answers
        the changes. A file that does not validate is a ClientError with its one-line
        error, and the old config keeps serving."""

    # -- usage
    async def usage(self, *, days: int, by: str) -> UsageReport:
        """The figures of ``lai stats --days DAYS --by BY`` (the same function)."""

    # -- keys
    async def keys(self) -> list[dict[str, Any]]:
        """Every key (prefix only, never key material)."""

    async def create_key(
        self, name: str, *, expires: str | None, scopes: list[str], priority: int | None
    ) -> NewKey:
        """Make a key (``expires`` like ``30d``, None for never); the secret is in the
        answer once."""

    async def rotate_key(self, prefix: str, *, grace: str) -> NewKey:
        """Issue a successor; the old key works until ``grace`` (``24h``) ends."""

    async def set_key_enabled(self, prefix: str, enabled: bool) -> None:
        """Revoke (False) or enable (True) the key with this prefix."""

    async def delete_key(self, prefix: str) -> None:
        """Delete the key with this prefix for good."""

    async def key_limits(self) -> list[KeyLimits]:
        """Every current key with limits, with the use of each now: the figures of
        ``lai keys list`` (the same function)."""

    async def update_key_limits(self, name_or_prefix: str, edit: LimitsEdit
                                ) -> list[dict[str, Any]]:
        """Change a key's limits as ``lai keys update`` does (by name: every key of it);
        answers the keys as they are now. A bad value is a ClientError and nothing is
        stored."""
