"""The Celery workers over REST: which ones answer a ping."""

from __future__ import annotations

import asyncio

from celery import Celery
from fastapi import APIRouter

from astra_proto.api.synth import WorkerList


def workers_router(celery_app: Celery) -> APIRouter:
    """Routes reporting the Celery workers."""
    router = APIRouter(tags=["workers"])

    @router.get("/workers", summary="Celery workers that answered a ping within a second")
    async def workers() -> WorkerList:
        replies = await asyncio.to_thread(celery_app.control.ping, timeout=1.0) or []
        names = sorted(name for reply in replies for name in reply)
        return WorkerList(count=len(names), workers=names)

    return router
