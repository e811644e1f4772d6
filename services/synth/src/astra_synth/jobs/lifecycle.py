"""The life of a job in a worker: read it, mark it running, run its body with stage progress,
and store how it ended (succeeded, failed with the reason, or cancelled over the API)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from astra_common.db import Database, ImmutableError
from astra_proto import JobState, StageProgress, SynthesisJob
from astra_synth.jobs.progress import JobCancelled, JobProgress
from astra_synth.settings import SynthSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RunningJob:
    """What a job's body works with."""

    job: SynthesisJob
    database: Database
    settings: SynthSettings
    progress: JobProgress

    def report(self, stage: StageProgress) -> None:
        """Take a stage's counts as they are (for code that counts its own stages)."""
        self.progress.stages[stage.stage] = stage.model_copy(deep=True)

    async def watch(self, work: Awaitable[T]) -> T:
        """Await ``work`` while writing progress every interval; a cancellation over the API
        cancels the work and raises ``JobCancelled``."""
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait({task}, timeout=self.progress.interval_s)
            try:
                await self.progress.flush()
            except JobCancelled:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
        return task.result()


async def run_job(
    job_id: str,
    settings: SynthSettings,
    stages: list[str] | Callable[[SynthesisJob], list[str]],
    body: Callable[[RunningJob], Awaitable[None]],
    *,
    yield_stats: bool = False,
) -> JobState:
    """Run job ``job_id`` to a terminal state and return it; a job that is already terminal
    (done, or cancelled before a worker picked it up) is left as it is. ``stages`` are the
    progress stages (or a function of the job giving them); ``yield_stats``: the result holds
    the registry yield statistics (environment jobs)."""
    database = Database(settings.database_url)
    try:
        async with database.transaction() as repos:
            job = await repos.jobs.get(job_id)
        if job.state.terminal:
            return job.state
        names = stages(job) if callable(stages) else stages
        progress = JobProgress(database, job_id, names, yield_stats=yield_stats)
        try:
            async with database.transaction() as repos:
                await repos.jobs.update(
                    job_id, state=JobState.RUNNING, progress=progress.snapshot()
                )
        except ImmutableError:  # cancelled in the meantime
            return await _state(database, job_id)
        try:
            await body(RunningJob(job, database, settings, progress))
            await progress.flush(force=True)
            async with database.transaction() as repos:
                await repos.jobs.update(job_id, state=JobState.SUCCEEDED)
            return JobState.SUCCEEDED
        except JobCancelled:
            log.info("job %s was cancelled; stopped", job_id)
            return await _state(database, job_id)
        except Exception as exc:
            log.exception("%s job %s failed", job.kind.value, job_id)
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            try:
                await progress.flush(force=True)
                async with database.transaction() as repos:
                    await repos.jobs.update(job_id, state=JobState.FAILED, error=reason)
            except (JobCancelled, ImmutableError):
                pass
            return await _state(database, job_id)
    finally:
        await database.dispose()


async def _state(database: Database, job_id: str) -> JobState:
    async with database.transaction() as repos:
        return (await repos.jobs.get(job_id)).state
