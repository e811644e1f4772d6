"""Which jobs produced which environments (a content-hashed spec may come from many jobs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_environments",
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("env_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "env_id", name=op.f("pk_job_environments")),
    )
    op.create_index(op.f("ix_job_environments_env_id"), "job_environments", ["env_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_environments_env_id"), table_name="job_environments")
    op.drop_table("job_environments")
