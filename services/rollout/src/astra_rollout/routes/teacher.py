"""rollout REST API: teacher runs (start, list, progress, trajectories page by page, cancel)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from astra_proto.api.rollout import TeacherRunRequest, TeacherRunStatus, TrajectoryPage
from astra_rollout.batches import BatchError
from astra_rollout.teacher import TeacherRunner

MAX_PAGE = 200


def teacher_router(runner: TeacherRunner, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes of the teacher runner; starting and cancelling need the token when set."""
    router = APIRouter(prefix="/teacher-runs", tags=["teacher runs"])
    write = [Depends(auth)]

    async def known(run_id: str) -> TeacherRunStatus:
        try:
            return await runner.status(run_id)
        except KeyError:
            raise HTTPException(404, detail=f"no teacher run {run_id!r}") from None

    @router.post("", status_code=201, dependencies=write, summary="Play tasks with a teacher model")
    async def start(body: TeacherRunRequest) -> TeacherRunStatus:
        try:
            return await runner.start(body)
        except BatchError as exc:
            raise HTTPException(exc.status, detail=str(exc)) from None

    @router.get("", summary="Teacher runs within the retention, oldest first")
    async def list_runs() -> list[TeacherRunStatus]:
        return await runner.all()

    @router.get("/{run_id}", summary="Progress of a teacher run")
    async def read(run_id: str) -> TeacherRunStatus:
        return await known(run_id)

    @router.get("/{run_id}/trajectories", summary="Finished trajectories, in finishing order")
    async def trajectories(
        run_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> TrajectoryPage:
        await known(run_id)
        return await runner.trajectories(run_id, offset, limit)

    @router.post("/{run_id}/cancel", dependencies=write, summary="Cancel a teacher run")
    async def cancel(run_id: str) -> TeacherRunStatus:
        status = await known(run_id)
        if status.state.terminal:
            raise HTTPException(409, detail=f"teacher run {run_id!r} has already ended")
        return await runner.cancel(run_id)

    return router
