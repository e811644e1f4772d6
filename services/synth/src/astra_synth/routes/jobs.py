"""Synthesis jobs over REST: start, list, read, cancel, statistics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from astra_common.db import Database, ImmutableError, NotFoundError
from astra_common.query_bounds import QueryOffset
from astra_proto import JobKind, JobRejectionPage, JobState, SynthesisJob
from astra_proto.api.synth import (
    MAX_QA_BYTES,
    DatasetJobRequest,
    EnvironmentJobRequest,
    JobPage,
    JobStats,
    TaskJobRequest,
    TrajectoryJobRequest,
)
from astra_synth.jobs.celery_tasks import (
    DATASET_JOB_TASK,
    ENVIRONMENT_JOB_TASK,
    TASK_JOB_TASK,
    TRAJECTORY_JOB_TASK,
)
from astra_synth.procedural.generate import DEFAULT_HOPS, scenario_types_for
from astra_synth.settings import SynthSettings
from astra_synth.trajectories.store import TrajectoryStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = MAX_QA_BYTES + 1_000_000
MAX_PAGE = 500


async def limit_body(request: Request) -> None:
    """Refuse bodies above ``MAX_BODY_BYTES`` with 413 before reading them."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(
            413, detail=f"request body of {int(length)} bytes exceeds {MAX_BODY_BYTES} bytes"
        )


def jobs_router(
    database: Database,
    celery_app: Celery,
    settings: SynthSettings,
    auth: Callable[..., Awaitable[None]],
) -> APIRouter:
    """Routes of synthesis jobs."""
    router = APIRouter(prefix="/jobs", tags=["jobs"])
    store = TrajectoryStore(settings.data_dir)

    def known_toolset(toolset_id: str) -> None:
        try:
            store.load_toolset(toolset_id)
        except KeyError:
            raise HTTPException(
                404, detail=f"no toolset {toolset_id!r} (register it with POST /v1/toolsets)"
            ) from None

    def needs_llm(base_url: str | None, what: str) -> None:
        if not (base_url or settings.llm_base_url):
            raise HTTPException(
                422,
                detail=f"{what} needs an LLM endpoint: give llm_base_url, or configure "
                "ASTRA_SYNTH_LLM_BASE_URL",
            )

    @router.post(
        "/environments",
        status_code=201,
        dependencies=[Depends(auth), Depends(limit_body)],
        summary="Start an environment-synthesis job",
    )
    async def start_environment_job(body: EnvironmentJobRequest) -> SynthesisJob:
        if body.qa_size() > MAX_QA_BYTES:
            raise HTTPException(
                413, detail=f"qa_jsonl holds {body.qa_size()} bytes; the limit is {MAX_QA_BYTES}"
            )
        source = body.resolved_source()
        if source == "procedural" and body.scenario_types:
            check_scenario_types(body)
        if source in ("qa", "knowledge"):
            needs_llm(body.llm_base_url, f"source {source!r}")
            check_pipeline_settings(body.pipeline)
        return await submit(JobKind.ENVIRONMENTS, body, ENVIRONMENT_JOB_TASK, source=source)

    @router.post(
        "/datasets",
        status_code=201,
        dependencies=[Depends(auth)],
        summary="Start a dataset job (gold SFT trajectories of registered environments)",
    )
    async def start_dataset_job(body: DatasetJobRequest) -> SynthesisJob:
        return await submit(JobKind.TRAJECTORIES, body, DATASET_JOB_TASK)

    @router.post(
        "/tasks",
        status_code=201,
        dependencies=[Depends(auth)],
        summary="Start a tasks job (tool-call graph, chains, tasks for a toolset)",
    )
    async def start_task_job(body: TaskJobRequest) -> SynthesisJob:
        known_toolset(body.toolset_id)
        needs_llm(body.llm_base_url, "task synthesis")
        return await submit(JobKind.TASKS, body, TASK_JOB_TASK)

    @router.post(
        "/trajectories",
        status_code=201,
        dependencies=[Depends(auth)],
        summary="Start a trajectory job (tasks -> teacher -> judge -> SFT dataset)",
    )
    async def start_trajectory_job(body: TrajectoryJobRequest) -> SynthesisJob:
        known_toolset(body.toolset_id)
        needs_llm(body.llm_base_url, "the task pipeline, the tool emulator and the judge")
        if body.tasks == "stored":
            try:
                store.load_tasks(body.toolset_id)
            except KeyError:
                raise HTTPException(
                    409,
                    detail=f"toolset {body.toolset_id!r} has no stored tasks: run a tasks job "
                    "first (POST /v1/jobs/tasks), or ask for tasks: synthesize",
                ) from None
        return await submit(JobKind.TRAJECTORIES, body, TRAJECTORY_JOB_TASK)

    async def submit(kind: JobKind, body: BaseModel, task: str, **extra: Any) -> SynthesisJob:
        """Store the job (its parameters: ``body`` and ``extra``), then queue it (a queue
        failure marks it failed and answers 503)."""
        params = body.model_dump(mode="json", exclude_none=True) | extra
        now = datetime.now(UTC)
        job = SynthesisJob(
            id=f"job_{uuid.uuid4().hex}", kind=kind, params=params, created_at=now, updated_at=now
        )
        async with database.transaction() as repos:
            created = await repos.jobs.create(job, task_name=task)
        try:
            await asyncio.to_thread(celery_app.send_task, task, args=[job.id], task_id=job.id)
        except Exception as exc:
            log.exception("could not queue job %s", job.id)
            reason = f"the job queue is unreachable: {type(exc).__name__}: {exc}"
            async with database.transaction() as repos:
                await repos.jobs.update(job.id, state=JobState.FAILED, error=reason)
            raise HTTPException(503, detail=reason) from None
        return created

    @router.get("", summary="Jobs, newest first")
    async def list_jobs(
        state: JobState | None = None,
        kind: JobKind | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: QueryOffset = 0,
    ) -> JobPage:
        async with database.transaction() as repos:
            jobs = await repos.jobs.list(state=state, kind=kind, limit=limit, offset=offset)
        return JobPage(items=jobs)

    @router.get("/{job_id}", summary="A job: state and stage-by-stage progress")
    async def read_job(job_id: str) -> SynthesisJob:
        return await _get(database, job_id)

    @router.get("/{job_id}/stats", summary="A job's yield statistics and rejections")
    async def job_stats(job_id: str) -> JobStats:
        job = await _get(database, job_id)
        return JobStats(job_id=job.id, state=job.state, progress=job.progress, stats=job.result)

    @router.get("/{job_id}/rejections", summary="The items a job rejected, oldest first")
    async def job_rejections(
        job_id: str,
        stage: str | None = None,
        reason: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: QueryOffset = 0,
    ) -> JobRejectionPage:
        """Which item each rejection hit, at which stage, the reason and an excerpt of the
        rejected reply; filtered by ``stage`` and ``reason`` when given. The counts by reason
        are in the job's progress (records are kept for the first 1000 rejections of a run)."""
        try:
            async with database.transaction() as repos:
                await repos.jobs.get(job_id)
                total, items = await repos.jobs.rejections(
                    job_id, stage=stage, reason=reason, limit=limit, offset=offset
                )
        except NotFoundError:
            raise HTTPException(404, detail=f"no job {job_id!r}") from None
        return JobRejectionPage(job_id=job_id, total=total, items=items)

    @router.post("/{job_id}/cancel", dependencies=[Depends(auth)], summary="Cancel a job")
    async def cancel_job(job_id: str) -> SynthesisJob:
        try:
            async with database.transaction() as repos:
                job = await repos.jobs.update(
                    job_id, state=JobState.CANCELLED, error="cancelled over the API"
                )
        except NotFoundError:
            raise HTTPException(404, detail=f"no job {job_id!r}") from None
        except ImmutableError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        # A queued job never starts; a running one sees the state at its next progress write.
        await asyncio.to_thread(celery_app.control.revoke, job_id)
        return job

    return router


def check_scenario_types(request: EnvironmentJobRequest) -> None:
    """422 when a procedural job names scenario types that none of its hop counts suits (the
    detail names the types that would)."""
    try:
        scenario_types_for(request.hops or DEFAULT_HOPS, request.scenario_types)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def check_pipeline_settings(pipeline: dict[str, Any]) -> None:
    """422 when the LLM pipeline settings do not validate."""
    from pydantic import ValidationError

    from astra_synth.llm_pipeline import PipelineSettings

    try:
        PipelineSettings.model_validate(pipeline)
    except ValidationError as exc:
        raise HTTPException(422, detail=f"pipeline settings: {exc}") from None


async def _get(database: Database, job_id: str) -> SynthesisJob:
    try:
        async with database.transaction() as repos:
            return await repos.jobs.get(job_id)
    except NotFoundError:
        raise HTTPException(404, detail=f"no job {job_id!r}") from None
