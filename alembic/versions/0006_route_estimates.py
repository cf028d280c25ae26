"""Scheduling by estimate: requests.estimate_ms and route_reason, api_keys.spill_after.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without defaults: SQLite adds them with ALTER TABLE, no copy.
    op.add_column("requests", sa.Column("estimate_ms", sa.Float(), nullable=True))
    op.add_column("requests", sa.Column("route_reason", sa.String(500), nullable=True))
    op.add_column("api_keys", sa.Column("spill_after", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "spill_after")
    op.drop_column("requests", "route_reason")
    op.drop_column("requests", "estimate_ms")
