"""Content retention: messages.content_removed_at and the index its sweep reads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_messages_content_removed_at_created_at"


def upgrade() -> None:
    # A nullable column without default: SQLite adds it with ALTER TABLE, no table copy
    # (which would drop the full-text triggers of 0002).
    op.add_column(
        "messages", sa.Column("content_removed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(_INDEX, "messages", ["content_removed_at", "created_at"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="messages")
    # SQLite 3.35+ drops a column in place; batch mode would copy the table and lose the
    # full-text triggers.
    op.drop_column("messages", "content_removed_at")
