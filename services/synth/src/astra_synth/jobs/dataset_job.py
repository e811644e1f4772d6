"""Run one dataset job: gold SFT trajectories of registered environments, played through
envhost and exported (JSONL + Parquet + dataset card) under the data directory.

Idempotent: a re-delivered job plays the environments again and rewrites the same dataset.
"""

from __future__ import annotations

from astra_common.db import Database, EnvironmentFilter
from astra_proto import EnvironmentSpec, JobState
from astra_proto.api.synth import DatasetJobRequest
from astra_synth.jobs.lifecycle import RunningJob, run_job
from astra_synth.settings import SynthSettings
from astra_synth.trajectories.gold import gold_dataset
from astra_synth.trajectories.store import TrajectoryStore

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
    return await run_job(job_id, settings, ["gold_trajectories"], _gold)


async def _gold(job: RunningJob) -> None:
    request = DatasetJobRequest.model_validate(job.job.params)
    specs = await select_environments(job.database, request)
    if not specs:
        raise ValueError("no registered environment matches the request")
    settings = job.settings
    store = TrajectoryStore(settings.data_dir)
    name = request.name or job.job.id
    token = settings.envhost_token.get_secret_value() if settings.envhost_token else None
    manifest = await job.watch(
        gold_dataset(
            specs,
            envhost_url=settings.envhost_url,
            out_dir=store.dataset_dir(name),
            token=token,
            progress=job.report,
            concurrency=request.concurrency,
            name=name,
            on_reject=job.progress.record,
        )
    )
    job.progress.notes["dataset"] = manifest.model_dump(mode="json")
