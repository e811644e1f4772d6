"""Synthesis jobs and their lifecycle."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.errors import ConflictError, ImmutableError
from astra_common.db.models import JobRejectionRow, SynthesisJobRow
from astra_common.db.repositories._common import (
    DEFAULT_LIMIT,
    check_page,
    get_row,
    insert_if_absent,
    utc_now,
)
from astra_proto import JobKind, JobRejection, JobState, StageProgress, SynthesisJob

TERMINAL_JOB_STATES = tuple(state.value for state in JobState if state.terminal)
"""Stored values of the states a job never leaves."""


@dataclass(frozen=True)
class StaleJob:
    """A running job whose worker stopped renewing its lease."""

    job: SynthesisJob
    task_name: str | None
    """The Celery task that runs it (None for jobs stored before tasks were recorded)."""


class JobRepository:
    """Synthesis jobs. A job in a terminal state (succeeded, failed, cancelled) never changes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, job: SynthesisJob, *, task_name: str | None = None) -> SynthesisJob:
        """Store a new job as given (``task_name``: the Celery task that runs it);
        ``ConflictError`` when its id is taken."""
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
                "task_name": task_name,
                "attempts": job.attempts,
                "heartbeat_at": job.heartbeat_at,
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
        attempt: int | None = None,
    ) -> SynthesisJob:
        """Change what is given (progress and result are replaced whole), stamp ``updated_at``.

        Entering a terminal state stamps ``finished_at``. Any update of a job that is already
        terminal raises ``ImmutableError``, atomically: of two racing terminal updates (say,
        succeeded and cancelled) exactly one wins. ``attempt``: the run making the update; a
        run that another has superseded (the job was claimed again) gets ``ImmutableError``
        too. ``NotFoundError`` when there is no such job.
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
        if attempt is not None:
            statement = statement.where(
                SynthesisJobRow.attempts == attempt,
                SynthesisJobRow.state == JobState.RUNNING.value,
            )
        if (await self.session.execute(statement)).first() is None:
            current = await self.get(job_id)  # NotFoundError when missing
            if not current.state.terminal:
                raise ImmutableError(
                    f"job {job_id!r} was taken over (now {current.state.value}, attempt "
                    f"{current.attempts}); attempt {attempt} may no longer change it"
                )
            raise ImmutableError(
                f"job {job_id!r} is {current.state.value}; a finished job cannot change"
            )
        return await self.get(job_id)

    async def claim(self, job_id: str, *, lease_s: float) -> SynthesisJob | None:
        """Start a run of the job: mark it running, count the attempt, start its lease.

        Only a pending job, or a running one whose lease ran out (its worker is gone), can be
        claimed; None otherwise (finished, or another worker holds a live lease). The returned
        job's ``attempts`` identifies this run for ``update(attempt=...)`` and ``heartbeat``.
        """
        now = utc_now()
        cutoff = datetime.fromtimestamp(now.timestamp() - lease_s, tz=now.tzinfo)
        statement = (
            update(SynthesisJobRow)
            .where(
                SynthesisJobRow.id == job_id,
                or_(
                    SynthesisJobRow.state == JobState.PENDING.value,
                    (SynthesisJobRow.state == JobState.RUNNING.value)
                    & or_(
                        SynthesisJobRow.heartbeat_at.is_(None),
                        SynthesisJobRow.heartbeat_at < cutoff,
                    ),
                ),
            )
            .values(
                state=JobState.RUNNING.value,
                attempts=SynthesisJobRow.attempts + 1,
                heartbeat_at=now,
                updated_at=now,
            )
            .returning(SynthesisJobRow.id)
            .execution_options(synchronize_session=False)
        )
        if (await self.session.execute(statement)).first() is None:
            await self.get(job_id)  # NotFoundError when missing
            return None
        return await self.get(job_id)

    async def heartbeat(self, job_id: str, *, attempt: int) -> bool:
        """Renew the lease of run ``attempt``; False when that run no longer holds the job
        (finished, cancelled, or claimed by a later run)."""
        statement = (
            update(SynthesisJobRow)
            .where(
                SynthesisJobRow.id == job_id,
                SynthesisJobRow.state == JobState.RUNNING.value,
                SynthesisJobRow.attempts == attempt,
            )
            .values(heartbeat_at=utc_now())
            .returning(SynthesisJobRow.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).first() is not None

    async def stale(self, *, lease_s: float, limit: int = DEFAULT_LIMIT) -> builtins.list[StaleJob]:
        """Running jobs whose lease ran out ``lease_s`` ago or earlier, oldest first."""
        now = utc_now()
        cutoff = datetime.fromtimestamp(now.timestamp() - lease_s, tz=now.tzinfo)
        rows = await self.session.scalars(
            select(SynthesisJobRow)
            .where(
                SynthesisJobRow.state == JobState.RUNNING.value,
                or_(
                    SynthesisJobRow.heartbeat_at.is_(None),
                    SynthesisJobRow.heartbeat_at < cutoff,
                ),
            )
            .order_by(SynthesisJobRow.heartbeat_at)
            .limit(limit)
        )
        return [StaleJob(_job(row), row.task_name) for row in rows]

    async def release(
        self, job_id: str, *, attempt: int, lease_s: float, failure: str | None = None
    ) -> bool:
        """Take a stale run's job back: pending again (to be queued anew), or failed with
        ``failure`` as its error. Atomic: False when the run renewed its lease, finished, or
        was superseded in the meantime."""
        now = utc_now()
        cutoff = datetime.fromtimestamp(now.timestamp() - lease_s, tz=now.tzinfo)
        values: dict[str, Any] = {"updated_at": now, "heartbeat_at": None}
        if failure is None:
            values["state"] = JobState.PENDING.value
        else:
            values |= {"state": JobState.FAILED.value, "error": failure, "finished_at": now}
        statement = (
            update(SynthesisJobRow)
            .where(
                SynthesisJobRow.id == job_id,
                SynthesisJobRow.state == JobState.RUNNING.value,
                SynthesisJobRow.attempts == attempt,
                or_(
                    SynthesisJobRow.heartbeat_at.is_(None),
                    SynthesisJobRow.heartbeat_at < cutoff,
                ),
            )
            .values(values)
            .returning(SynthesisJobRow.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).first() is not None

    async def add_rejections(self, job_id: str, rejections: Sequence[JobRejection]) -> None:
        """Store rejection records of the job (in the order given)."""
        if not rejections:
            return
        await self.session.execute(
            insert(JobRejectionRow),
            [
                {
                    "job_id": job_id,
                    "stage": r.stage,
                    "reason": r.reason,
                    "item": r.item,
                    "message": r.message,
                    "excerpt": r.excerpt,
                    "at": r.at,
                }
                for r in rejections
            ],
        )

    async def clear_rejections(self, job_id: str) -> None:
        """Forget the job's rejection records (a new run counts from zero)."""
        await self.session.execute(delete(JobRejectionRow).where(JobRejectionRow.job_id == job_id))

    async def rejections(
        self,
        job_id: str,
        *,
        stage: str | None = None,
        reason: str | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> tuple[int, builtins.list[JobRejection]]:
        """How many rejection records match, and a page of them, oldest first."""
        check_page(limit, offset)
        condition = [JobRejectionRow.job_id == job_id]
        if stage is not None:
            condition.append(JobRejectionRow.stage == stage)
        if reason is not None:
            condition.append(JobRejectionRow.reason == reason)
        total = await self.session.scalar(
            select(func.count()).select_from(JobRejectionRow).where(*condition)
        )
        rows = await self.session.scalars(
            select(JobRejectionRow)
            .where(*condition)
            .order_by(JobRejectionRow.id)
            .limit(limit)
            .offset(offset)
        )
        return int(total or 0), [
            JobRejection(
                stage=row.stage,
                reason=row.reason,
                item=row.item,
                message=row.message,
                excerpt=row.excerpt,
                at=row.at,
            )
            for row in rows
        ]


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
        attempts=row.attempts,
        heartbeat_at=row.heartbeat_at,
    )
