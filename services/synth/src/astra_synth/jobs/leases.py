"""The lease keeper: no job stays ``running`` after its worker is gone.

A worker renews the lease of the job it runs (``heartbeat_at``). A job whose lease ran out
(the worker was killed, hangs, or lost the database and could not store the end) is queued
again for a fresh run, or failed with the reason once ``job_max_attempts`` runs were started.
Every job kind is safe to run again: environments are registered by content hash, so a re-run
finds the ones stored before as duplicates and registers none twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from celery import Celery
from fastapi import FastAPI

from astra_common.db import Database
from astra_common.db.repositories import StaleJob, utc_now
from astra_common.service import Lifespan
from astra_proto import JobState
from astra_synth.settings import SynthSettings

log = logging.getLogger(__name__)


async def settle_stale_jobs(
    database: Database, celery_app: Celery, settings: SynthSettings
) -> list[str]:
    """One pass: queue again, or fail, every running job whose lease ran out; the ids of
    the jobs settled."""
    async with database.transaction() as repos:
        stale = await repos.jobs.stale(lease_s=settings.job_lease_s)
    settled = []
    for entry in stale:
        if await _settle(database, celery_app, settings, entry):
            settled.append(entry.job.id)
    return settled


async def _settle(
    database: Database, celery_app: Celery, settings: SynthSettings, entry: StaleJob
) -> bool:
    job = entry.job
    silent = _since(job.heartbeat_at or job.updated_at)
    lapse = (
        f"its worker stopped renewing the job's lease (no heartbeat for {silent:.0f} s, "
        f"lease {settings.job_lease_s:g} s) during run {job.attempts}"
    )
    if entry.task_name is None or job.attempts >= settings.job_max_attempts:
        failure = f"{lapse}; {job.attempts} of {settings.job_max_attempts} runs used, giving up"
        async with database.transaction() as repos:
            released = await repos.jobs.release(
                job.id, attempt=job.attempts, lease_s=settings.job_lease_s, failure=failure
            )
        if released:
            log.warning("job %s failed: %s", job.id, failure)
        return released
    async with database.transaction() as repos:
        released = await repos.jobs.release(
            job.id, attempt=job.attempts, lease_s=settings.job_lease_s
        )
    if not released:
        return False
    try:
        await asyncio.to_thread(
            celery_app.send_task, entry.task_name, args=[job.id], task_id=job.id
        )
    except Exception as exc:
        reason = f"{lapse}; queueing it again failed: {type(exc).__name__}: {exc}"
        async with database.transaction() as repos:
            await repos.jobs.update(job.id, state=JobState.FAILED, error=reason)
        log.warning("job %s failed: %s", job.id, reason)
        return True
    log.warning("job %s queued again: %s", job.id, lapse)
    return True


def _since(moment: datetime) -> float:
    return (utc_now() - moment).total_seconds()


async def keep_leases(database: Database, celery_app: Celery, settings: SynthSettings) -> None:
    """Settle stale jobs every quarter of the lease, until cancelled; a failed pass (the
    database or broker is down) is logged and tried again at the next one."""
    while True:
        try:
            await settle_stale_jobs(database, celery_app, settings)
        except Exception as exc:
            log.warning("lease check failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(settings.job_lease_s / 4)


def with_lease_keeper(
    inner: Lifespan, database: Database, celery_app: Celery, settings: SynthSettings
) -> Lifespan:
    """``inner`` with the lease keeper running beside the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):  # the keeper stops before inner's closers run
            keeper = asyncio.create_task(keep_leases(database, celery_app, settings))
            try:
                yield
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)

    return lifespan
