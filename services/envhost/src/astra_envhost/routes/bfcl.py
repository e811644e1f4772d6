"""envhost REST route of the BFCL pack: its environment specs, for synth's ``bfcl`` source.

The benchmark's data and loader live here because envhost also executes and scores BFCL
episodes; synth imports BFCL environments by asking for their specs over this route.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from astra_envhost.bfcl import bfcl_environments
from astra_proto import EnvironmentSpec

MAX_ENTRY_IDS = 1_000


def bfcl_router() -> APIRouter:
    """``GET /bfcl/environments``: BFCL v3 multi-turn entries as environment specs."""
    router = APIRouter(prefix="/bfcl", tags=["bfcl"])

    @router.get(
        "/environments",
        summary="BFCL multi-turn entries as environment specs (not registered)",
    )
    async def environments(
        category: Annotated[
            list[str] | None,
            Query(
                max_length=8,
                description="Categories, with or without their multi_turn_ prefix "
                "(base, miss_func, miss_param, long_context); default: all four.",
            ),
        ] = None,
        limit: Annotated[
            int | None, Query(ge=0, description="At most this many entries per category.")
        ] = None,
        entry: Annotated[
            list[str] | None,
            Query(max_length=MAX_ENTRY_IDS, description="Only these BFCL entry ids."),
        ] = None,
    ) -> list[EnvironmentSpec]:
        """The specs ``bfcl_environments(category, limit, entry)`` builds, in BFCL's order;
        422 for an unknown category or entry id."""
        try:
            # Reading the benchmark's files takes a while: off the event loop.
            return await asyncio.to_thread(bfcl_environments, category, limit, entry)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None

    return router
