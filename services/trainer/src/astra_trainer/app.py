"""The trainer FastAPI app."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, HTTPException

from astra_common.health import redis_check
from astra_common.service import closing_lifespan, create_service_app
from astra_proto import POLICY_KEY, PolicyPointer
from astra_trainer import __version__
from astra_trainer.settings import TrainerSettings


def policy_router(redis_client: aioredis.Redis) -> APIRouter:
    """Routes reading the current policy pointer."""
    router = APIRouter(tags=["policy"])

    @router.get("/policy", summary="The current policy version and checkpoint")
    async def current_policy() -> PolicyPointer:
        raw = await redis_client.get(POLICY_KEY)
        if raw is None:
            raise HTTPException(404, detail=f"no policy published yet ({POLICY_KEY} is unset)")
        return PolicyPointer.model_validate_json(raw)

    return router


def create_app(settings: TrainerSettings) -> FastAPI:
    """Build the trainer app."""
    redis_client = aioredis.Redis.from_url(settings.redis_url)
    return create_service_app(
        service="trainer",
        version=__version__,
        settings=settings,
        routers=[policy_router(redis_client)],
        health_checks={"redis": redis_check(redis_client)},
        lifespan=closing_lifespan(redis_client.aclose),
    )
