"""The envhost client: episodes over REST, one-off sandboxed executions, BFCL specs.

```python
async with EnvhostClient("http://127.0.0.1:8101", token=token) as envhost:
    episode = await envhost.create_episode(EpisodeRequest(env_id=spec.id))
    reward = await envhost.score_episode(episode.id, ScoreRequest(final_answer="21"))
    await envhost.close_episode(episode.id)
```

An episode's tools are served over MCP at its ``mcp_url``, not through this client. The
episode routes of a replica that does not hold the episode redirect (307) to the one that
does; an ``http`` client given with ``follow_redirects=True`` follows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from astra_common.clients.base import ServiceClient, ServiceError, error_detail
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    ExecutionRequest,
    ExecutionResult,
    RewardBreakdown,
    ScoreRequest,
)
from astra_proto.api.envhost import MAX_BFCL_PAGE, BfclPage, EpisodeSummary, TurnResult


class EnvhostAtCapacity(ServiceError):
    """envhost holds as many episodes as it may (503): nothing was created. ``reply`` is the
    answer, whose ``Retry-After`` says when to ask again."""

    def __init__(self, message: str, *, reply: httpx.Response, detail: str) -> None:
        super().__init__(message, status=reply.status_code, detail=detail)
        self.reply = reply


class EnvhostClient(ServiceClient):
    """Typed client of envhost's REST API (``/v1/episodes``, ``/v1/executions``,
    ``/v1/bfcl/environments``)."""

    service = "envhost"

    # --- episodes -----------------------------------------------------------------------------

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        """``POST /v1/episodes``, sent once: a fresh episode. ``EnvhostAtCapacity`` when envhost
        is full (503), ``ServiceError`` 404 for an unknown environment, 422 for a request it
        cannot serve."""
        path = "/v1/episodes"
        try:
            reply = await self._send(
                "POST", path, params={}, content=request.model_dump_json().encode()
            )
        except httpx.TransportError as error:
            raise self._unreachable("POST", path, error) from None
        if reply.status_code == 503:
            detail = error_detail(reply)
            raise EnvhostAtCapacity(
                f"{self.service}: POST {path} answered 503: {detail}", reply=reply, detail=detail
            )
        return self._answer("POST", path, reply, Episode, expect=(201,))

    async def list_episodes(self) -> list[EpisodeSummary]:
        """``GET /v1/episodes``: the open episodes this replica holds."""
        return await self.get("/v1/episodes", list[EpisodeSummary])

    async def read_episode(self, episode_id: str) -> Episode:
        """``GET /v1/episodes/{id}``: the episode with its call log (also a closed one)."""
        return await self.get(f"/v1/episodes/{episode_id}", Episode)

    async def advance_turn(self, episode_id: str) -> TurnResult:
        """``POST /v1/episodes/{id}/turns``: move a multi-turn episode to its next user turn
        (409 when it has none)."""
        return await self.post(f"/v1/episodes/{episode_id}/turns", TurnResult, expect=(200,))

    async def score_episode(self, episode_id: str, request: ScoreRequest) -> RewardBreakdown:
        """``POST /v1/episodes/{id}/score``: the environment's verdict on the episode."""
        return await self.post(
            f"/v1/episodes/{episode_id}/score", RewardBreakdown, request, expect=(200,)
        )

    async def close_episode(self, episode_id: str) -> None:
        """``DELETE /v1/episodes/{id}``: release the episode (404 when it is not open)."""
        await self.send("DELETE", f"/v1/episodes/{episode_id}", type(None), expect=(204,))

    # --- executions and BFCL ------------------------------------------------------------------

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        """``POST /v1/executions``: run the calls in order in one fresh sandbox built from the
        request's tools; a tool's failure is an outcome with ``error``, not an error answer."""
        return await self.post("/v1/executions", ExecutionResult, request, expect=(200,))

    async def bfcl_page(
        self,
        *,
        categories: Sequence[str] | None = None,
        limit: int | None = None,
        entries: Sequence[str] | None = None,
        offset: int = 0,
        page_size: int = MAX_BFCL_PAGE,
    ) -> BfclPage:
        """``GET /v1/bfcl/environments``: specs ``offset`` .. ``offset + page_size`` of a BFCL
        v3 multi-turn selection (categories, at most ``limit`` entries per category, or the
        named entry ids); ``ServiceError`` 422 for an unknown category or entry id."""
        params = {
            "category": list(categories) if categories else None,
            "limit": limit,
            "entry": list(entries) if entries else None,
            "offset": offset,
            "page_size": page_size,
        }
        return await self.get("/v1/bfcl/environments", BfclPage, params=params)

    async def bfcl_environments(
        self,
        *,
        categories: Sequence[str] | None = None,
        limit: int | None = None,
        entries: Sequence[str] | None = None,
    ) -> list[EnvironmentSpec]:
        """Every spec of the selection, page by page (the whole benchmark is ~16 MB)."""
        specs: list[EnvironmentSpec] = []
        while True:
            page = await self.bfcl_page(
                categories=categories, limit=limit, entries=entries, offset=len(specs)
            )
            specs += page.items
            if not page.items or len(specs) >= page.total:
                return specs
