"""Synthesis jobs and their lifecycle."""

from __future__ import annotations

import builtins
from collections.abc import Collection
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.errors import ConflictError, ImmutableError
from astra_common.db.models import SynthesisJobRow
from astra_common.db.repositories._common import (
    DEFAULT_LIMIT,
    check_page,
    get_row,
    insert_if_absent,
    utc_now,
)
from astra_proto import JobKind, JobState, StageProgress, SynthesisJob

TERMINAL_JOB_STATES = tuple(state.value for state in JobState if state.terminal)
"""Stored values of the states a job never leaves."""


class JobRepository:
    """Synthesis jobs. A job in a terminal state (succeeded, failed, cancelled) never changes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, job: SynthesisJob) -> SynthesisJob:
        """Store a new job as given; ``ConflictError`` when its id is taken."""
        inserted = await insert_if_absent(
            self.session,
            SynthesisJobRow,
            {
                "id": job.id,
                "kind": job.kind.value,
                "state": job.state.value,
                "params": job.params,
                "progress": [stage.model_dump(mode="json") for stage in job.progress],
                "result": job.result,
                "error": job.error,
                "created_at": job.created_at,
                "updated_at": job.updated_at,
                "finished_at": job.finished_at,
            },
        )
        if not inserted:
            raise ConflictError(f"job {job.id!r} already exists")
        return await self.get(job.id)

    async def get(self, job_id: str) -> SynthesisJob:
        """The job; ``NotFoundError`` when there is none."""
        return _job(await get_row(self.session, SynthesisJobRow, "job", job_id))

    async def list(
        self,
        *,
        state: JobState | Collection[JobState] | None = None,
        kind: JobKind | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> builtins.list[SynthesisJob]:
        """Jobs, newest first; filtered by ``state`` (one or several) and ``kind`` when given."""
        check_page(limit, offset)
        query = select(SynthesisJobRow)
        if isinstance(state, JobState):
            query = query.where(SynthesisJobRow.state == state.value)
        elif state is not None:
            query = query.where(SynthesisJobRow.state.in_([s.value for s in state]))
        if kind is not None:
            query = query.where(SynthesisJobRow.kind == kind.value)
        query = query.order_by(SynthesisJobRow.created_at.desc(), SynthesisJobRow.id.desc())
        rows = await self.session.scalars(query.limit(limit).offset(offset))
        return [_job(row) for row in rows]

    async def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        progress: builtins.list[StageProgress] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> SynthesisJob:
        """Change what is given (progress and result are replaced whole), stamp ``updated_at``.

        Entering a terminal state stamps ``finished_at``. Any update of a job that is already
        terminal raises ``ImmutableError``, atomically: of two racing terminal updates (say,
        succeeded and cancelled) exactly one wins. ``NotFoundError`` when there is no such job.
        """
        now = utc_now()
        values: dict[str, Any] = {"updated_at": now}
        if state is not None:
            values["state"] = state.value
            if state.terminal:
                values["finished_at"] = now
        if progress is not None:
            values["progress"] = [stage.model_dump(mode="json") for stage in progress]
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error
        statement = (
            update(SynthesisJobRow)
            .where(SynthesisJobRow.id == job_id, SynthesisJobRow.state.not_in(TERMINAL_JOB_STATES))
            .values(values)
            .returning(SynthesisJobRow.id)
            .execution_options(synchronize_session=False)
        )
        if (await self.session.execute(statement)).first() is None:
            current = await self.get(job_id)  # NotFoundError when missing
            raise ImmutableError(
                f"job {job_id!r} is {current.state.value}; a finished job cannot change"
            )
        return await self.get(job_id)


def _job(row: SynthesisJobRow) -> SynthesisJob:
    return SynthesisJob(
        id=row.id,
        kind=JobKind(row.kind),
        state=JobState(row.state),
        params=row.params,
        progress=[StageProgress.model_validate(stage) for stage in row.progress],
        result=row.result or {},
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )
