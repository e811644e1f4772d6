"""envhost REST route of the BFCL pack: its environment specs, for synth's ``bfcl`` source.

The benchmark's data and loader live here because envhost also executes and scores BFCL
episodes; synth imports BFCL environments by asking for their specs over this route.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from astra_envhost.bfcl import bfcl_environments
from astra_proto import EnvironmentSpec
from astra_proto.api.envhost import MAX_BFCL_ENTRY_IDS, MAX_BFCL_PAGE, BfclPage


@functools.lru_cache(maxsize=8)
def _selection(
    categories: tuple[str, ...] | None, limit: int | None, entries: tuple[str, ...] | None
) -> list[EnvironmentSpec]:
    """The selection's specs, built once (reading the benchmark takes seconds) for its pages."""
    return bfcl_environments(
        list(categories) if categories is not None else None,
        limit,
        list(entries) if entries is not None else None,
    )


def bfcl_router() -> APIRouter:
    """``GET /bfcl/environments``: BFCL v3 multi-turn entries as environment specs."""
    router = APIRouter(prefix="/bfcl", tags=["bfcl"])

    @router.get(
        "/environments",
        summary="BFCL multi-turn entries as environment specs (not registered), page by page",
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
            Query(max_length=MAX_BFCL_ENTRY_IDS, description="Only these BFCL entry ids."),
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        page_size: Annotated[int, Query(ge=1, le=MAX_BFCL_PAGE)] = MAX_BFCL_PAGE,
    ) -> BfclPage:
        """Specs ``offset`` .. ``offset + page_size`` of what ``bfcl_environments(category,
        limit, entry)`` builds; 422 for an unknown category or entry id."""
        key = (
            tuple(category) if category else None,
            limit,
            tuple(entry) if entry else None,
        )
        try:
            # Reading the benchmark's files takes a while: off the event loop.
            specs = await asyncio.to_thread(_selection, *key)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return BfclPage(total=len(specs), offset=offset, items=specs[offset : offset + page_size])

    return router
