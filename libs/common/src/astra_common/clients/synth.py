"""The synth service's typed client: jobs, the environment registry, datasets, toolsets, the
tool emulator, over the contracts of ``astra_proto.api.synth``.

```python
async with SynthClient("http://127.0.0.1:8100", token=token) as synth:
    job = await synth.start_job(EnvironmentJobRequest(count=8, hops=[1, 2]))
    async for job in synth.watch_job(job.id):
        print(job.state, [stage.done for stage in job.progress])
```
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

from astra_common.clients.base import ServiceClient, ServiceError
from astra_proto import EnvironmentSpec, JobKind, JobRejectionPage, JobState, SynthesisJob
from astra_proto.api.synth import (
    DatasetJobRequest,
    DatasetManifest,
    DatasetUpload,
    EmulateReply,
    EmulateRequest,
    EnvironmentJobRequest,
    EnvironmentPage,
    EnvironmentQuery,
    JobPage,
    JobRequest,
    JobStats,
    Registered,
    TaskJobRequest,
    ToolGraph,
    Toolset,
    ToolsetRequest,
    TrajectoryJobRequest,
    VerificationReport,
    WorkerList,
)

ENVIRONMENT_PAGE = 500
"""The most environments one ``GET /v1/environments`` answers (the route's maximum)."""

DOWNLOAD_CHUNK = 1 << 20


def _segment(value: str) -> str:
    """``value`` as one path segment (a ``/`` in an id cannot reach another route)."""
    return quote(value, safe="")


class SynthClient(ServiceClient):
    """Async client of the synth API; one method per route a caller uses."""

    service = "synth"

    # --- jobs ---------------------------------------------------------------------------------

    async def start_job(self, request: JobRequest) -> SynthesisJob:
        """Start the job ``request`` asks for (its type picks the route) → the stored job."""
        if isinstance(request, EnvironmentJobRequest):
            return await self.start_environment_job(request)
        if isinstance(request, DatasetJobRequest):
            return await self.start_dataset_job(request)
        if isinstance(request, TaskJobRequest):
            return await self.start_task_job(request)
        return await self.start_trajectory_job(request)

    async def start_environment_job(self, request: EnvironmentJobRequest) -> SynthesisJob:
        """``POST /v1/jobs/environments``: an environment-synthesis job."""
        return await self.post("/v1/jobs/environments", SynthesisJob, request)

    async def start_dataset_job(self, request: DatasetJobRequest) -> SynthesisJob:
        """``POST /v1/jobs/datasets``: gold SFT trajectories of registered environments."""
        return await self.post("/v1/jobs/datasets", SynthesisJob, request)

    async def start_task_job(self, request: TaskJobRequest) -> SynthesisJob:
        """``POST /v1/jobs/tasks``: tasks for a registered toolset."""
        return await self.post("/v1/jobs/tasks", SynthesisJob, request)

    async def start_trajectory_job(self, request: TrajectoryJobRequest) -> SynthesisJob:
        """``POST /v1/jobs/trajectories``: teacher trajectories of a toolset, judged."""
        return await self.post("/v1/jobs/trajectories", SynthesisJob, request)

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        kind: JobKind | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """``GET /v1/jobs``: jobs, newest first."""
        params = {"state": state, "kind": kind, "limit": limit, "offset": offset}
        return await self.get("/v1/jobs", JobPage, params=params)

    async def get_job(self, job_id: str) -> SynthesisJob:
        """``GET /v1/jobs/{job_id}``: the job's state, progress and result so far."""
        return await self.get(f"/v1/jobs/{_segment(job_id)}", SynthesisJob)

    async def watch_job(self, job_id: str, *, poll_s: float = 0.5) -> AsyncIterator[SynthesisJob]:
        """The job as read every ``poll_s`` seconds, ending with the read that finds it ended
        (succeeded, failed or cancelled)."""
        while True:
            job = await self.get_job(job_id)
            yield job
            if job.state.terminal:
                return
            await asyncio.sleep(poll_s)

    async def job_stats(self, job_id: str) -> JobStats:
        """``GET /v1/jobs/{job_id}/stats``: the job's yield and rejections by reason."""
        return await self.get(f"/v1/jobs/{_segment(job_id)}/stats", JobStats)

    async def job_rejections(
        self,
        job_id: str,
        *,
        stage: str | None = None,
        reason: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobRejectionPage:
        """``GET /v1/jobs/{job_id}/rejections``: what the job rejected, oldest first."""
        params = {"stage": stage, "reason": reason, "limit": limit, "offset": offset}
        path = f"/v1/jobs/{_segment(job_id)}/rejections"
        return await self.get(path, JobRejectionPage, params=params)

    async def cancel_job(self, job_id: str) -> SynthesisJob:
        """``POST /v1/jobs/{job_id}/cancel``: the job, now cancelled."""
        return await self.post(f"/v1/jobs/{_segment(job_id)}/cancel", SynthesisJob)

    async def workers(self) -> WorkerList:
        """``GET /v1/workers``: the Celery workers that answered a ping."""
        return await self.get("/v1/workers", WorkerList)

    # --- the environment registry -------------------------------------------------------------

    async def register_environment(self, spec: EnvironmentSpec) -> Registered:
        """``POST /v1/environments``: register ``spec`` (``created`` false: it was there)."""
        return await self.post("/v1/environments", Registered, spec)

    async def list_environments(
        self, filters: EnvironmentQuery | None = None, *, limit: int = 100, offset: int = 0
    ) -> EnvironmentPage:
        """``GET /v1/environments``: one page of the environments matching ``filters``."""
        params = (filters or EnvironmentQuery()).model_dump(mode="json", exclude_none=True)
        params |= {"limit": limit, "offset": offset}
        return await self.get("/v1/environments", EnvironmentPage, params=params)

    async def environment_ids(
        self, filters: EnvironmentQuery | None = None, *, limit: int, offset: int = 0
    ) -> list[str]:
        """Ids of at most ``limit`` environments matching ``filters``, in registry order,
        read page by page from ``offset``."""
        ids: list[str] = []
        while len(ids) < limit:
            size = min(ENVIRONMENT_PAGE, limit - len(ids))
            page = await self.list_environments(filters, limit=size, offset=offset)
            ids.extend(item.id for item in page.items)
            if len(page.items) < size:
                break
            offset += len(page.items)
        return ids

    async def get_environment(self, env_id: str) -> EnvironmentSpec:
        """``GET /v1/environments/{env_id}``: the spec with its certificate."""
        return await self.get(f"/v1/environments/{_segment(env_id)}", EnvironmentSpec)

    async def verify_environment(
        self, env_id: str, *, timeout_s: float | None = None
    ) -> VerificationReport:
        """``POST /v1/environments/{env_id}/verify``: every reference call replayed in
        envhost's sandbox and compared with the certificate."""
        path = f"/v1/environments/{_segment(env_id)}/verify"
        return await self.post(path, VerificationReport, timeout_s=timeout_s)

    # --- datasets -----------------------------------------------------------------------------

    async def upload_dataset(
        self, upload: DatasetUpload, *, timeout_s: float | None = None
    ) -> DatasetManifest:
        """``POST /v1/datasets``: export the records as they are, as dataset ``upload.name``."""
        return await self.post("/v1/datasets", DatasetManifest, upload, timeout_s=timeout_s)

    async def list_datasets(self) -> list[DatasetManifest]:
        """``GET /v1/datasets``: the manifests of every exported dataset."""
        return await self.get("/v1/datasets", list[DatasetManifest])

    async def get_dataset(self, name: str) -> DatasetManifest:
        """``GET /v1/datasets/{name}``: one dataset's manifest."""
        return await self.get(f"/v1/datasets/{_segment(name)}", DatasetManifest)

    async def download_dataset_file(
        self,
        name: str,
        file_path: str,
        target: Path,
        *,
        sha256: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """``GET /v1/datasets/{name}/files/{file_path}`` streamed into ``target`` (its folder
        made); returns the file's SHA-256. With ``sha256``, a file that arrives with another
        digest is deleted and ``ServiceError`` raised; ``target`` appears only once complete."""
        path = f"/v1/datasets/{_segment(name)}/files/{quote(file_path)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            async with self.stream(path, timeout_s=timeout_s) as reply:
                with partial.open("wb") as out:
                    async for chunk in reply.aiter_bytes(DOWNLOAD_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        found = digest.hexdigest()
        if sha256 is not None and found != sha256:
            partial.unlink(missing_ok=True)
            raise ServiceError(f"{file_path} of dataset {name!r} arrived with another SHA-256")
        partial.replace(target)
        return found

    # --- toolsets -----------------------------------------------------------------------------

    async def register_toolset(self, request: ToolsetRequest) -> Toolset:
        """``POST /v1/toolsets``: the toolset as kept, with every dropped tool's reason."""
        return await self.post("/v1/toolsets", Toolset, request)

    async def list_toolsets(self) -> list[str]:
        """``GET /v1/toolsets``: registered toolset ids."""
        return await self.get("/v1/toolsets", list[str])

    async def get_toolset(self, toolset_id: str) -> Toolset:
        """``GET /v1/toolsets/{toolset_id}``: one toolset."""
        return await self.get(f"/v1/toolsets/{_segment(toolset_id)}", Toolset)

    async def toolset_graphs(self, toolset_id: str) -> list[ToolGraph]:
        """``GET /v1/toolsets/{toolset_id}/graph``: the tool-call graph of each server."""
        return await self.get(f"/v1/toolsets/{_segment(toolset_id)}/graph", list[ToolGraph])

    # --- the tool emulator --------------------------------------------------------------------

    async def emulate(self, request: EmulateRequest) -> EmulateReply:
        """``POST /v1/emulate``: one call of a document-only tool, answered by synth's LLM."""
        return await self.post("/v1/emulate", EmulateReply, request, expect=(200,))
