"""Every table of the store, and only here.

Schema changes go through an Alembic revision in ``alembic/versions`` as well; a test
checks that autogenerate finds no difference between these models and ``upgrade head``.

Times are timezone-aware UTC ``datetime`` values in Python. SQLite keeps no zone, so
``UTCDateTime`` stores naive UTC there and hands back aware values on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# Named constraints make migrations deterministic, and SQLite batch mode can only drop
# a constraint it can name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 64
"""Longest conversation or request id (X-Conversation-ID allows 1-64 characters)."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware UTC, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # naive values are taken to be UTC already
            return value if dialect.name == "sqlite" else value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> sa.JSON:
    # none_as_null: Python None is SQL NULL, not the JSON literal 'null'.
    return sa.JSON(none_as_null=True)


class Conversation(SQLModel, table=True):
    """A conversation as the proxy saw it, labelled by the X-* request headers."""

    __tablename__ = "conversations"

    id: str = Field(primary_key=True, sa_type=sa.String(ID_LENGTH))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    """Last activity: lists are ordered by it, newest first."""
    username: str | None = Field(default=None, sa_type=sa.String(255), index=True)
    source: str | None = Field(default=None, sa_type=sa.String(255))
    display_name: str | None = Field(default=None, sa_type=sa.String(255))
    message_count: int = 0
    total_tokens: int = 0
    """Prompt plus completion tokens of every successful request in the conversation."""


class Message(SQLModel, table=True):
    """One message of a conversation, in order (``position`` 0, 1, 2, ...)."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("conversation_id", "position"),
        # The content-retention sweep looks for old messages whose text is still there.
        sa.Index("ix_messages_content_removed_at_created_at", "content_removed_at",
                 "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(
        sa_column=sa.Column(
            sa.String(ID_LENGTH),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    position: int
    role: str = Field(sa_type=sa.String(32))
    content: str | None = Field(default=None, sa_type=sa.Text)
    """The text; for a list of content parts, its text parts joined by blank lines."""
    name: str | None = Field(default=None, sa_type=sa.String(255))
    tool_call_id: str | None = Field(default=None, sa_type=sa.String(255))
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_type=_json())
    image_refs: list[Any] | None = Field(default=None, sa_type=_json())
    model: str | None = Field(default=None, sa_type=sa.String(255))
    provider: str | None = Field(default=None, sa_type=sa.String(255))
    tokens: int | None = None
    """Tokens of this message: the completion tokens of an assistant answer."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    request_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH), index=True)
    """The request that added this message."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    content_removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When ``server.content_retention_days`` removed the text and tool calls; None while
    they are kept. Such a message matches any resent text of the same role."""


class RequestRecord(SQLModel, table=True):
    """One API request, successful or not. Key name and prefix only, never key material."""

    __tablename__ = "requests"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(sa_type=sa.String(ID_LENGTH), unique=True)
    endpoint: str = Field(default="chat.completions", sa_type=sa.String(64))
    key_name: str | None = Field(default=None, sa_type=sa.String(255), index=True)
    key_prefix: str | None = Field(default=None, sa_type=sa.String(16))
    conversation_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH), index=True)
    """Not a foreign key: usage statistics outlive a deleted conversation."""
    username: str | None = Field(default=None, sa_type=sa.String(255))
    source: str | None = Field(default=None, sa_type=sa.String(255))
    model_requested: str = Field(sa_type=sa.String(255))
    model_id: str | None = Field(default=None, sa_type=sa.String(255), index=True)
    provider_id: str | None = Field(default=None, sa_type=sa.String(255), index=True)
    failover_from: list[str] | None = Field(default=None, sa_type=_json())
    """Providers tried and given up on before ``provider_id``, in order."""
    streaming: bool = False
    status: str = Field(sa_type=sa.String(16))
    """``success`` or ``error``."""
    http_status: int = 200
    error_code: str | None = Field(default=None, sa_type=sa.String(64))
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    finish_reason: str | None = Field(default=None, sa_type=sa.String(32))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    queue_ms: float = 0.0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    upstream_ms: float = 0.0
    estimate_ms: float | None = None
    """Expected time to first token on the provider chosen (scheduling ``fair``)."""
    route_reason: str | None = Field(default=None, sa_type=sa.String(500))
    """Why that provider was chosen: its estimate's parts and the rules applied."""


class ApiKey(SQLModel, table=True):
    """A ``lai_`` key: only its SHA-256 hash and its first 8 characters are kept."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(255), index=True)
    """Not unique: a rotated key and its successor share the name."""
    key_hash: str = Field(sa_type=sa.String(64), unique=True)
    key_prefix: str = Field(sa_type=sa.String(16), index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    enabled: bool = True
    scopes: list[str] = Field(default_factory=list, sa_type=_json())
    priority: int = 1
    """Queue priority: 0 goes first, 1 otherwise."""
    models: list[str] | None = Field(default=None, sa_type=_json())
    """Model ids the key may use; None for all."""
    rotated_from: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
        ),
    )
    """The id of the key this one replaced."""
    grace_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """For a rotated-out key: when it stops working."""
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    max_concurrent: int | None = None
    """Requests of this key in flight at once, over every provider; None: no cap."""
    max_queued: int | None = None
    """Requests of this key waiting in the queue at once; None: no cap."""
    rpm: int | None = None
    """Requests per minute; None: no limit."""
    tpm: int | None = None
    """Tokens (prompt and completion) per minute; None: no limit."""
    budgets: dict[str, float] | None = Field(default=None, sa_type=_json())
    """USD per period (``day``, ``week``, ``month``, UTC calendar periods); None: none."""
    spill_after: float | None = None
    """Seconds of expected local wait after which its ``auto`` requests go to the cloud
    at once; None: ``server.spill_after``."""


class StoredResponse(SQLModel, table=True):
    """A Responses API answer kept for ``GET /v1/responses/{id}`` and
    ``previous_response_id`` (requests with ``store`` true, the API's default)."""

    __tablename__ = "responses"

    id: str = Field(primary_key=True, sa_type=sa.String(ID_LENGTH))
    """``resp_...``."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    request_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH))
    key_name: str | None = Field(default=None, sa_type=sa.String(255), index=True)
    """The key that made it: only that key (or an admin) may read or continue it."""
    conversation_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH))
    """The conversation a continuation is recorded in."""
    previous_response_id: str | None = Field(default=None, sa_type=sa.String(ID_LENGTH))
    status: str = Field(sa_type=sa.String(16))
    body: dict[str, Any] = Field(sa_type=_json())
    """The ``response`` object as the client got it."""
    history: list[dict[str, Any]] = Field(default_factory=list, sa_type=_json())
    """The chat messages up to and including this answer, without the instructions:
    what a continuation sends before its own input."""
