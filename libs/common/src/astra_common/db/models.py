"""The database schema: SQLAlchemy declarative tables behind the repositories.

Rows are storage, not contracts: repositories turn them into the ``astra_proto`` models, and
nothing outside this package should need them. A change here needs an Alembic revision; a test
compares these tables with the migrated schema, so a forgotten revision fails the suite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so Alembic revisions can name what they alter or drop."""

ID_LENGTH = 255
LABEL_LENGTH = 128


def _json_type(*, none_as_null: bool = False) -> TypeEngine[Any]:
    return JSON(none_as_null=none_as_null).with_variant(
        JSONB(none_as_null=none_as_null), "postgresql"
    )


JSON_VALUE = _json_type()
"""JSON everywhere, JSONB on PostgreSQL. Python None is stored as JSON ``null``."""

JSON_OR_NULL = _json_type(none_as_null=True)
"""As ``JSON_VALUE``, but Python None is SQL NULL (for optional documents)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and timezone-aware when read back.

    SQLite keeps no zone, so values are converted to UTC before they are written; naive
    datetimes are taken to be UTC already. Comparisons in queries go through the same
    conversion, so they agree on every backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's DATETIME would drop the zone anyway; dropping it here keeps the stored text
        # in one canonical form, so string comparison orders it correctly.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every ASTRA table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SynthesisJobRow(Base):
    """A synthesis job (``astra_proto.SynthesisJob``)."""

    __tablename__ = "synthesis_jobs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    state: Mapped[str] = mapped_column(String(LABEL_LENGTH), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    progress: Mapped[list[dict[str, Any]]] = mapped_column(JSON_VALUE)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    task_name: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    """The Celery task that runs the job (how a job whose worker was lost is queued again)."""
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    """How many times a worker has started the job; the latest run fences out older ones."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    """When the worker running the job last renewed its lease."""


class JobRejectionRow(Base):
    """One item a job rejected: which stage, why, and an excerpt of what was rejected."""

    __tablename__ = "job_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("synthesis_jobs.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    reason: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    item: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    excerpt: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class EnvironmentRow(Base):
    """A registered environment: the immutable spec plus columns to query it by."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    kind: Mapped[str] = mapped_column(String(LABEL_LENGTH), index=True)
    source: Mapped[str | None] = mapped_column(String(LABEL_LENGTH), index=True)
    domain: Mapped[str] = mapped_column(String(LABEL_LENGTH), index=True)
    scenario_type: Mapped[str | None] = mapped_column(String(LABEL_LENGTH), index=True)
    hops: Mapped[int] = mapped_column(Integer, index=True)
    split: Mapped[str] = mapped_column(String(LABEL_LENGTH), index=True)
    # No foreign key: provenance may name a job of another deployment (imported specs).
    job_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class JobEnvironmentRow(Base):
    """An environment a job produced (several jobs may produce the same content-hashed spec;
    its provenance names only the first)."""

    __tablename__ = "job_environments"

    job_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    env_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, index=True)


class EpisodeRow(Base):
    """An episode (``astra_proto.Episode``) and the envhost replica that holds its state."""

    __tablename__ = "episodes"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(LABEL_LENGTH), index=True)
    mcp_url: Mapped[str] = mapped_column(Text)
    owner_url: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON_VALUE)
    distractor_tools: Mapped[list[str]] = mapped_column(JSON_VALUE)
    turn: Mapped[int] = mapped_column(Integer)
    reward: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class EpisodeCallRow(Base):
    """One tool call of an episode; (episode_id, seq) is the key, so positions are unique."""

    __tablename__ = "episode_calls"

    episode_id: Mapped[str] = mapped_column(
        ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool_name: Mapped[str] = mapped_column(String(ID_LENGTH))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    result: Mapped[Any] = mapped_column(JSON_VALUE, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    turn: Mapped[int] = mapped_column(Integer)
    distractor: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrajectoryRow(Base):
    """An archived trajectory: the whole record as JSON, plus columns to query it by."""

    __tablename__ = "trajectories"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    # No foreign keys: the archive outlives episodes, and SFT trajectories need no registered env.
    env_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    episode_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    group_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    policy_version: Mapped[int] = mapped_column(Integer, index=True)
    f1: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    stream_entry_id: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
