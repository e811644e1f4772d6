"""Job leases (task name, attempts, heartbeat) and per-item rejection records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("synthesis_jobs") as batch:
        batch.add_column(sa.Column("task_name", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("heartbeat_at", _timestamp(), nullable=True))
    op.create_index(op.f("ix_synthesis_jobs_heartbeat_at"), "synthesis_jobs", ["heartbeat_at"])
    op.create_table(
        "job_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("stage", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("item", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["synthesis_jobs.id"],
            name=op.f("fk_job_rejections_job_id_synthesis_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_rejections")),
    )
    op.create_index(op.f("ix_job_rejections_job_id"), "job_rejections", ["job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_rejections_job_id"), table_name="job_rejections")
    op.drop_table("job_rejections")
    op.drop_index(op.f("ix_synthesis_jobs_heartbeat_at"), table_name="synthesis_jobs")
    with op.batch_alter_table("synthesis_jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("attempts")
        batch.drop_column("task_name")
