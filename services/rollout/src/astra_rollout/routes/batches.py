"""rollout REST API: group-rollout batches (start, list, progress and summary, cancel)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException

from astra_proto.api.rollout import BatchRequest, BatchStatus
from astra_rollout.batches import BatchError, BatchNotFound, BatchRunner


def batches_router(runner: BatchRunner, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes of the batch runner; writes need the bearer token when one is configured."""
    router = APIRouter(prefix="/batches", tags=["batches"])
    write = [Depends(auth)]

    async def known(batch_id: str) -> BatchStatus:
        try:
            return await runner.status(batch_id)
        except BatchNotFound:
            raise HTTPException(404, detail=f"no batch {batch_id!r}") from None

    @router.post("", status_code=201, dependencies=write, summary="Start a batch of rollouts")
    async def start(body: BatchRequest) -> BatchStatus:
        try:
            return await runner.start(body)
        except BatchError as exc:
            raise HTTPException(exc.status, detail=str(exc)) from None

    @router.get("", summary="Batches within the retention, oldest first")
    async def list_batches() -> list[BatchStatus]:
        return await runner.all()

    @router.get("/{batch_id}", summary="Progress and summary of a batch")
    async def read(batch_id: str) -> BatchStatus:
        return await known(batch_id)

    @router.post("/{batch_id}/cancel", dependencies=write, summary="Cancel a running batch")
    async def cancel(batch_id: str) -> BatchStatus:
        status = await known(batch_id)
        if status.state.terminal:
            detail = f"batch {batch_id!r} has already ended ({status.state})"
            raise HTTPException(409, detail=detail)
        return await runner.cancel(batch_id)

    return router
