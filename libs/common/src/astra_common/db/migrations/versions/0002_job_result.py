"""Synthesis jobs keep what they produced so far (yield statistics) in ``result``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Frozen copy of models.JSON_OR_NULL: revisions never import the models.
    json_or_null = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    with op.batch_alter_table("synthesis_jobs") as batch:
        batch.add_column(sa.Column("result", json_or_null, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("synthesis_jobs") as batch:
        batch.drop_column("result")
