"""The trainer FastAPI app."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, HTTPException

from astra_common.errors import ErrorBody
from astra_common.health import redis_check
from astra_common.policy_pointer import PolicyPointerUnreadable, read_policy_pointer
from astra_common.service import closing_lifespan, create_service_app
from astra_proto import POLICY_KEY, PolicyPointer
from astra_trainer import __version__
from astra_trainer.metrics import RunMetricsCollector
from astra_trainer.routes.runs import runs_router
from astra_trainer.runs import RunManager
from astra_trainer.settings import TrainerSettings


def policy_router(redis_client: aioredis.Redis) -> APIRouter:
    """Routes reading the current policy pointer."""
    router = APIRouter(tags=["policy"])

    @router.get(
        "/policy",
        summary="The current policy version and checkpoint",
        responses={
            404: {"model": ErrorBody, "description": "No policy was published yet"},
            500: {"model": ErrorBody, "description": "The pointer in Redis is damaged"},
        },
    )
    async def current_policy() -> PolicyPointer:
        try:
            pointer = await read_policy_pointer(redis_client)
        except PolicyPointerUnreadable as exc:
            raise HTTPException(500, detail=str(exc)) from None
        if pointer is None:
            raise HTTPException(404, detail=f"no policy published yet ({POLICY_KEY} is unset)")
        return pointer

    return router


def create_app(settings: TrainerSettings) -> FastAPI:
    """Build the trainer app."""
    redis_client = aioredis.Redis.from_url(settings.redis_url)
    runs = RunManager(
        settings.checkpoint_dir,
        settings.model_dir,
        max_concurrent_runs=settings.max_concurrent_runs,
    )

    async def stop_runs() -> None:
        runs.close()

    app = create_service_app(
        service="trainer",
        version=__version__,
        settings=settings,
        routers=[policy_router(redis_client), runs_router(settings, runs)],
        health_checks={"redis": redis_check(redis_client)},
        lifespan=closing_lifespan(redis_client.aclose, stop_runs),
    )
    app.state.metrics.registry.register(RunMetricsCollector(settings.checkpoint_dir))
    app.state.runs = runs
    return app
