"""Serving an ASGI app over real HTTP inside a test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def running(app: ASGIApp, port: int, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on loopback for the duration of the block; yields its URL.
    ``config``: more ``uvicorn.Config`` arguments."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(60):  # an envhost closes every open episode and flushes
            await task
