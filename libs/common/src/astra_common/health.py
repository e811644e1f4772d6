"""Readiness probes for the dependencies services share."""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra_common.service import HealthCheck


def redis_check(client: aioredis.Redis) -> HealthCheck:
    """Passes when Redis answers PING."""

    async def check() -> None:
        await client.ping()

    return check


def database_check(engine: AsyncEngine) -> HealthCheck:
    """Passes when the database answers ``SELECT 1``."""

    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check
