"""The policy pointer over REST: the version and checkpoint rollout samples with."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException

from astra_common.errors import ErrorBody
from astra_common.policy_pointer import PolicyPointerUnreadable, read_policy_pointer
from astra_proto import POLICY_KEY, PolicyPointer


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
