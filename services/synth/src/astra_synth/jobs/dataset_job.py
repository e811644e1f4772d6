"""Run one dataset job: gold SFT trajectories of registered environments, played through
envhost and exported (JSONL + Parquet + dataset card) under the data directory.

Idempotent: a re-delivered job plays the environments again and rewrites the same dataset.
"""

from __future__ import annotations

import asyncio
import logging

from astra_common.db import Database, EnvironmentFilter, ImmutableError
from astra_proto import EnvironmentSpec, JobState, StageProgress
from astra_synth.jobs.progress import JobCancelled, JobProgress
from astra_synth.jobs.requests import DatasetJobRequest
from astra_synth.settings import SynthSettings
from astra_synth.trajectories.gold import gold_dataset
from astra_synth.trajectories.store import TrajectoryStore

log = logging.getLogger(__name__)

PAGE = 500


async def select_environments(
    database: Database, request: DatasetJobRequest
) -> list[EnvironmentSpec]:
    """The request's environments: the given ids (all must exist), or the registry filter."""
    async with database.transaction() as repos:
        if request.env_ids is not None:
            return [await repos.environments.get(env_id) for env_id in request.env_ids]
        where = EnvironmentFilter(
            source=request.env_source,
            split=request.split,
            domain=request.domain,
            job_id=request.job_id,
        )
        specs: list[EnvironmentSpec] = []
        while len(specs) < request.limit:
            page = await repos.environments.list(
                where, limit=min(PAGE, request.limit - len(specs)), offset=len(specs)
            )
            specs += page
            if len(page) < PAGE:
                break
        return specs


async def run_dataset_job(job_id: str, settings: SynthSettings) -> JobState:
    """Run the job to a terminal state and return it (an ended job is left as it is)."""
    database = Database(settings.database_url)
    try:
        async with database.transaction() as repos:
            job = await repos.jobs.get(job_id)
        if job.state.terminal:
            return job.state
        request = DatasetJobRequest.model_validate(job.params)
        progress = JobProgress(database, job_id, ["gold_trajectories"], yield_stats=False)
        try:
            async with database.transaction() as repos:
                await repos.jobs.update(
                    job_id, state=JobState.RUNNING, progress=progress.snapshot()
                )
        except ImmutableError:
            return job.state
        try:
            specs = await select_environments(database, request)
            if not specs:
                raise ValueError("no registered environment matches the request")

            def report(stage: StageProgress) -> None:
                progress.stages[stage.stage] = stage.model_copy(deep=True)

            store = TrajectoryStore(settings.data_dir)
            name = request.name or job_id
            token = settings.envhost_token.get_secret_value() if settings.envhost_token else None
            gold = asyncio.create_task(
                gold_dataset(
                    specs,
                    envhost_url=settings.envhost_url,
                    out_dir=store.dataset_dir(name),
                    token=token,
                    progress=report,
                    concurrency=request.concurrency,
                    name=name,
                )
            )
            while not gold.done():  # write progress, and learn of a cancellation, as it plays
                await asyncio.wait({gold}, timeout=progress.interval_s)
                try:
                    await progress.flush()
                except JobCancelled:
                    gold.cancel()
                    await asyncio.gather(gold, return_exceptions=True)
                    raise
            manifest = gold.result()
            progress.notes["dataset"] = manifest.model_dump(mode="json")
            await progress.flush(force=True)
            async with database.transaction() as repos:
                await repos.jobs.update(job_id, state=JobState.SUCCEEDED)
            return JobState.SUCCEEDED
        except JobCancelled:
            return JobState.CANCELLED
        except Exception as exc:
            log.exception("dataset job %s failed", job_id)
            try:
                await progress.flush(force=True)
                async with database.transaction() as repos:
                    await repos.jobs.update(
                        job_id, state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}"
                    )
            except (JobCancelled, ImmutableError):
                pass
            async with database.transaction() as repos:
                return (await repos.jobs.get(job_id)).state
    finally:
        await database.dispose()
