"""The rollout FastAPI app."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import FastAPI

from astra_common.health import redis_check
from astra_common.service import closing_lifespan, create_service_app
from astra_rollout import __version__
from astra_rollout.settings import RolloutSettings


def create_app(settings: RolloutSettings) -> FastAPI:
    """Build the rollout app."""
    redis_client = aioredis.Redis.from_url(settings.redis_url)
    return create_service_app(
        service="rollout",
        version=__version__,
        settings=settings,
        health_checks={"redis": redis_check(redis_client)},
        lifespan=closing_lifespan(redis_client.aclose),
    )
