"""rollout REST API: evaluation suites (start, list, progress and scores, trajectories)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException

from astra_proto import Trajectory
from astra_proto.api.rollout import EvaluationRequest, EvaluationStatus
from astra_rollout.evaluation import EvaluationError, EvaluationRunner


def evaluations_router(runner: EvaluationRunner, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes of the evaluation runner; starting and cancelling need the token when set."""
    router = APIRouter(prefix="/evaluations", tags=["evaluations"])
    write = [Depends(auth)]

    async def known(evaluation_id: str) -> EvaluationStatus:
        try:
            return await runner.status(evaluation_id)
        except KeyError:
            raise HTTPException(404, detail=f"no evaluation {evaluation_id!r}") from None

    @router.post("", status_code=201, dependencies=write, summary="Start an evaluation suite")
    async def start(body: EvaluationRequest) -> EvaluationStatus:
        try:
            return await runner.start(body)
        except EvaluationError as exc:
            raise HTTPException(exc.status, detail=str(exc)) from None

    @router.get("", summary="Evaluations within the retention (without per-entry rows)")
    async def list_evaluations() -> list[EvaluationStatus]:
        return await runner.all()

    @router.get("/{evaluation_id}", summary="Progress, scores per category and per entry")
    async def read(evaluation_id: str) -> EvaluationStatus:
        return await known(evaluation_id)

    @router.get("/{evaluation_id}/trajectories/{trajectory_id}", summary="One evaluated trajectory")
    async def trajectory(evaluation_id: str, trajectory_id: str) -> Trajectory:
        await known(evaluation_id)
        try:
            return await runner.trajectory(evaluation_id, trajectory_id)
        except KeyError:
            raise HTTPException(404, detail=f"no trajectory {trajectory_id!r}") from None

    @router.post("/{evaluation_id}/cancel", dependencies=write, summary="Cancel an evaluation")
    async def cancel(evaluation_id: str) -> EvaluationStatus:
        status = await known(evaluation_id)
        if status.state.terminal:
            raise HTTPException(409, detail=f"evaluation {evaluation_id!r} has already ended")
        return await runner.cancel(evaluation_id)

    return router
