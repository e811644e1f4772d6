"""envhost REST routes of one-off sandboxed executions (synthesis verifies tools with them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException

from astra_envhost.executions import ExecutionRunner, InvalidExecution
from astra_proto import ExecutionRequest, ExecutionResult


def executions_router(runner: ExecutionRunner, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``POST /executions``: run tool calls once in a fresh sandbox (synthesis verifies tools)."""
    router = APIRouter(prefix="/executions", tags=["executions"])

    @router.post(
        "",
        dependencies=[Depends(auth)],
        summary="Run calls in order in one fresh sandbox built from the given tools",
    )
    async def execute(body: ExecutionRequest) -> ExecutionResult:
        try:
            return await runner.run(body)
        except InvalidExecution as exc:
            raise HTTPException(422, detail=str(exc)) from None

    return router
