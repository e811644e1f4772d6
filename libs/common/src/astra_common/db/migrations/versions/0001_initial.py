"""Initial schema: synthesis jobs, environments, episodes and their calls, trajectories.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json(*, none_as_null: bool = False) -> sa.types.TypeEngine[Any]:
    # Frozen copy of models.JSON_VALUE / JSON_OR_NULL: revisions never import the models.
    return sa.JSON(none_as_null=none_as_null).with_variant(
        postgresql.JSONB(none_as_null=none_as_null), "postgresql"
    )


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "synthesis_jobs",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("progress", _json(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_synthesis_jobs")),
    )
    op.create_index(op.f("ix_synthesis_jobs_state"), "synthesis_jobs", ["state"])
    op.create_index(op.f("ix_synthesis_jobs_created_at"), "synthesis_jobs", ["created_at"])

    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("kind", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("domain", sa.String(length=128), nullable=False),
        sa.Column("scenario_type", sa.String(length=128), nullable=True),
        sa.Column("hops", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
    )
    for column in ("kind", "source", "domain", "scenario_type", "hops", "split", "job_id"):
        op.create_index(op.f(f"ix_environments_{column}"), "environments", [column])
    op.create_index(op.f("ix_environments_created_at"), "environments", ["created_at"])

    op.create_table(
        "episodes",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("env_id", sa.String(length=255), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("mcp_url", sa.Text(), nullable=False),
        sa.Column("owner_url", sa.Text(), nullable=True),
        sa.Column("tools", _json(), nullable=False),
        sa.Column("distractor_tools", _json(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("reward", _json(none_as_null=True), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("last_active_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["env_id"], ["environments.id"], name=op.f("fk_episodes_env_id_environments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    op.create_index(op.f("ix_episodes_env_id"), "episodes", ["env_id"])
    op.create_index(op.f("ix_episodes_state"), "episodes", ["state"])
    op.create_index(op.f("ix_episodes_last_active_at"), "episodes", ["last_active_at"])

    op.create_table(
        "episode_calls",
        sa.Column("episode_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tool_name", sa.String(length=255), nullable=False),
        sa.Column("arguments", _json(), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("distractor", sa.Boolean(), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_episode_calls_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("episode_id", "seq", name=op.f("pk_episode_calls")),
    )

    op.create_table(
        "trajectories",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("env_id", sa.String(length=255), nullable=False),
        sa.Column("episode_id", sa.String(length=255), nullable=True),
        sa.Column("group_id", sa.String(length=255), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("finish_reason", sa.String(length=128), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("stream_entry_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trajectories")),
    )
    for column in ("env_id", "group_id", "policy_version", "created_at"):
        op.create_index(op.f(f"ix_trajectories_{column}"), "trajectories", [column])


def downgrade() -> None:
    op.drop_table("trajectories")
    op.drop_table("episode_calls")
    op.drop_table("episodes")
    op.drop_table("environments")
    op.drop_table("synthesis_jobs")
