"""Per-key limits: api_keys.max_concurrent, max_queued, rpm, tpm and budgets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("max_concurrent", "max_queued", "rpm", "tpm")


def upgrade() -> None:
    # Nullable columns without defaults (None: no limit): SQLite adds them with ALTER
    # TABLE, no table copy.
    for name in _COLUMNS:
        op.add_column("api_keys", sa.Column(name, sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("budgets", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "budgets")
    for name in reversed(_COLUMNS):
        op.drop_column("api_keys", name)
