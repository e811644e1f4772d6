"""The life of a job in a worker: read it, mark it running, run its body with stage progress,
and store how it ended (succeeded, failed with the reason, or cancelled over the API)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from astra_common.db import Database, ImmutableError
from astra_common.retry import is_transient, retry_transient
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
    (done, or cancelled before a worker picked it up) is left as it is, and so is one that a
    live worker runs already (a duplicate delivery). ``stages`` are the progress stages (or a
    function of the job giving them); ``yield_stats``: the result holds the registry yield
    statistics (environment jobs).

    While the body runs, the worker renews the job's lease every ``job_heartbeat_s``; the
    writes of progress and of the final state are retried while the database is unreachable
    (up to ``job_db_retry_s``). A job whose end could not be written stays ``running`` with a
    lease that runs out, and the API's lease keeper queues it again or fails it."""
    database = Database(settings.database_url)
    try:
        return await _run(database, job_id, settings, stages, body, yield_stats=yield_stats)
    finally:
        await database.dispose()


async def _run(
    database: Database,
    job_id: str,
    settings: SynthSettings,
    stages: list[str] | Callable[[SynthesisJob], list[str]],
    body: Callable[[RunningJob], Awaitable[None]],
    *,
    yield_stats: bool,
) -> JobState:
    async def read() -> SynthesisJob:
        async with database.transaction() as repos:
            return await repos.jobs.get(job_id)

    job = await retry_transient(
        read, what=f"read job {job_id}", give_up_after_s=settings.job_db_retry_s
    )
    if job.state.terminal:
        return job.state
    names = stages(job) if callable(stages) else stages
    fresh = JobProgress(database, job_id, names, yield_stats=yield_stats)

    async def claim() -> SynthesisJob | None:
        async with database.transaction() as repos:
            claimed = await repos.jobs.claim(job_id, lease_s=settings.job_lease_s)
            if claimed is not None:  # a new run counts from zero
                await repos.jobs.clear_rejections(job_id)
                claimed = await repos.jobs.update(
                    job_id, progress=fresh.snapshot(), attempt=claimed.attempts
                )
            return claimed

    claimed = await retry_transient(
        claim, what=f"start job {job_id}", give_up_after_s=settings.job_db_retry_s
    )
    if claimed is None:
        state = await _state(database, job_id)
        log.info("job %s is %s and not free to run here; left as it is", job_id, state.value)
        return state
    attempt = claimed.attempts
    log.info("%s job %s: run %d started", job.kind.value, job_id, attempt)
    progress = JobProgress(
        database,
        job_id,
        names,
        yield_stats=yield_stats,
        attempt=attempt,
        retry_s=settings.job_db_retry_s,
    )
    work = asyncio.ensure_future(body(RunningJob(claimed, database, settings, progress)))
    lost = asyncio.Event()
    lease = asyncio.ensure_future(_keep_lease(database, job_id, attempt, settings, work, lost))
    try:
        try:
            await work
        except asyncio.CancelledError:
            if not lost.is_set():
                raise
            raise JobCancelled(job_id) from None
        finally:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
        await progress.flush(force=True)
        return await _finish(database, job_id, attempt, settings, JobState.SUCCEEDED)
    except JobCancelled:
        log.info("job %s was cancelled or taken over; run %d stopped", job_id, attempt)
        return await _state(database, job_id)
    except Exception as exc:
        log.exception("%s job %s failed", job.kind.value, job_id)
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            await progress.flush(force=True)
        except JobCancelled:
            return await _state(database, job_id)
        except Exception:  # the failure is still recorded below, with its reason
            log.warning("job %s: could not store its last progress", job_id, exc_info=True)
        return await _finish(database, job_id, attempt, settings, JobState.FAILED, reason)


async def _keep_lease(
    database: Database,
    job_id: str,
    attempt: int,
    settings: SynthSettings,
    work: asyncio.Future[None],
    lost: asyncio.Event,
) -> None:
    """Renew run ``attempt``'s lease until cancelled; when the run no longer holds the job
    (cancelled over the API, or taken over after its lease ran out), stop its work."""
    while True:
        await asyncio.sleep(settings.job_heartbeat_s)
        try:
            async with database.transaction() as repos:
                held = await repos.jobs.heartbeat(job_id, attempt=attempt)
        except Exception as exc:  # an outage: the next beat may get through
            log.warning(
                "job %s: could not renew its lease: %s: %s", job_id, type(exc).__name__, exc
            )
            continue
        if not held:
            lost.set()
            work.cancel()
            return


async def _finish(
    database: Database,
    job_id: str,
    attempt: int,
    settings: SynthSettings,
    state: JobState,
    error: str | None = None,
) -> JobState:
    """Store how run ``attempt`` ended, retrying while the database is unreachable. If it
    stays unreachable the job is left running: its lease runs out and the lease keeper
    settles it."""

    async def write() -> None:
        async with database.transaction() as repos:
            await repos.jobs.update(job_id, state=state, error=error, attempt=attempt)

    try:
        await retry_transient(
            write,
            what=f"record job {job_id} {state.value}",
            give_up_after_s=settings.job_db_retry_s,
        )
    except ImmutableError:  # cancelled or taken over meanwhile
        return await _state(database, job_id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.error(
            "job %s ended %s but that could not be stored (%s: %s); its lease will run out and "
            "the lease keeper will settle it",
            job_id,
            state.value,
            type(exc).__name__,
            exc,
        )
        return JobState.RUNNING
    log.info("job %s %s (run %d)", job_id, state.value, attempt)
    return state


async def _state(database: Database, job_id: str) -> JobState:
    async with database.transaction() as repos:
        return (await repos.jobs.get(job_id)).state
