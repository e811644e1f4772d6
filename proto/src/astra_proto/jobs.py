"""Synthesis jobs and their stage-by-stage progress."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from astra_proto.base import ContractModel


class JobKind(StrEnum):
    """What a synthesis job produces."""

    ENVIRONMENTS = "environments"
    TRAJECTORIES = "trajectories"
    TASKS = "tasks"


class JobState(StrEnum):
    """Lifecycle of a job; the last three are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class StageProgress(ContractModel):
    """Counts of one pipeline stage."""

    stage: str
    done: int = Field(default=0, ge=0)
    total: int | None = Field(default=None, ge=0)
    rejected: dict[str, int] = Field(default_factory=dict, description="Rejections by reason.")


class SynthesisJob(ContractModel):
    """A synthesis job as the control plane reports it."""

    id: str
    kind: JobKind
    state: JobState = JobState.PENDING
    params: dict[str, Any] = Field(default_factory=dict)
    progress: list[StageProgress] = Field(default_factory=list)
    result: dict[str, Any] = Field(
        default_factory=dict, description="What the job produced so far (e.g. yield statistics)."
    )
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    attempts: int = Field(
        default=0, ge=0, description="How many times a worker has started the job."
    )
    heartbeat_at: datetime | None = Field(
        default=None, description="When the worker running the job last renewed its lease."
    )


MAX_REJECTION_TEXT = 1000
"""Longest ``message`` or ``item`` a rejection record keeps (longer text is cut)."""

MAX_REJECTION_EXCERPT = 500
"""Longest excerpt of the rejected reply a rejection record keeps."""


class JobRejection(ContractModel):
    """One item a job rejected: at which stage, why, and what was rejected."""

    stage: str
    reason: str = Field(description="A short stable slug, as counted in the stage's progress.")
    item: str | None = Field(
        default=None, max_length=MAX_REJECTION_TEXT, description="Which item (its id or text)."
    )
    message: str | None = Field(
        default=None, max_length=MAX_REJECTION_TEXT, description="Why, in words."
    )
    excerpt: str | None = Field(
        default=None,
        max_length=MAX_REJECTION_EXCERPT,
        description="The start of the model's reply (or the input) that was rejected.",
    )
    at: datetime


class JobRejectionPage(ContractModel):
    """A page of a job's rejections, oldest first, and how many the job stored in all."""

    job_id: str
    total: int = Field(ge=0)
    items: list[JobRejection]
