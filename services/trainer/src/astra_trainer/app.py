"""The trainer FastAPI app."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import FastAPI

from astra_common.health import redis_check
from astra_common.service import closing_lifespan, create_service_app
from astra_trainer import __version__
from astra_trainer.metrics import RunMetricsCollector
from astra_trainer.routes.policy import policy_router
from astra_trainer.routes.runs import runs_router
from astra_trainer.runs import RunManager
from astra_trainer.settings import TrainerSettings


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
