"""envhost REST routes of episodes over HTTP (the rollout path)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from astra_envhost.episodes import (
    CapacityError,
    EpisodeManager,
    EpisodeNotFound,
    InvalidRequest,
    LiveEpisode,
)
from astra_envhost.registry import UnknownEnvironment
from astra_proto import (
    Episode,
    EpisodeRequest,
    RewardBreakdown,
    ScoreRequest,
)
from astra_proto.api.envhost import EpisodeSummary, TurnResult

_FORWARDED_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def forwarded_base(request: Request) -> str | None:
    """``proto://host`` the client used in front of a gateway (X-Forwarded-Host and -Proto,
    first of each), or None when the request names none or names one that is no host."""
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    if not _FORWARDED_HOST.fullmatch(host):
        return None
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return f"{proto if proto in ('http', 'https') else request.url.scheme}://{host}"


class RedirectToOwner(Exception):
    """The episode lives on another replica."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def episodes_router(
    manager: EpisodeManager,
    auth: Callable[..., Awaitable[None]],
    *,
    trust_forwarded_headers: bool = False,
) -> APIRouter:
    """Routes creating, reading, advancing, scoring and closing episodes.

    ``trust_forwarded_headers``: the MCP URLs in answers name the address the client used in
    front of a gateway (``forwarded_base``) rather than this replica, when the request says.
    """
    router = APIRouter(prefix="/episodes", tags=["episodes"])
    write = [Depends(auth)]

    def mcp_url(request: Request, episode_id: str, own: str) -> str:
        base = forwarded_base(request) if trust_forwarded_headers else None
        return own if base is None else manager.mcp_url(episode_id, base)

    def as_seen(request: Request, episode: Episode) -> Episode:
        url = mcp_url(request, episode.id, episode.mcp_url)
        return episode if url == episode.mcp_url else episode.model_copy(update={"mcp_url": url})

    async def open_episode(episode_id: str, request: Request) -> LiveEpisode:
        try:
            return await manager.get(episode_id)
        except EpisodeNotFound as exc:
            if exc.owner_url:
                raise RedirectToOwner(exc.owner_url.rstrip("/") + request.url.path) from None
            raise HTTPException(404, detail=str(exc)) from None

    @router.post("", status_code=201, dependencies=write, summary="Open a fresh episode")
    async def create_episode(body: EpisodeRequest, request: Request, response: Response) -> Episode:
        try:
            episode = await manager.create(body)
        except UnknownEnvironment as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except InvalidRequest as exc:
            raise HTTPException(422, detail=str(exc)) from None
        except CapacityError as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from None
        # where it lives; a gateway also learns from it which replica holds the episode
        response.headers["Location"] = f"{request.url.path.rstrip('/')}/{episode.id}"
        return as_seen(request, episode.to_model())

    @router.get("", summary="Open episodes held by this replica")
    async def list_episodes(request: Request) -> list[EpisodeSummary]:
        return [
            EpisodeSummary(
                id=e.id,
                env_id=e.spec.id,
                state=e.state.value,
                turn=e.turn,
                calls=len(e.calls),
                mcp_url=mcp_url(request, e.id, e.mcp_url),
                last_active_at=e.last_active_at.isoformat(),
            )
            for e in manager.live.values()
        ]

    @router.get("/{episode_id}", summary="An episode with its call log")
    async def read_episode(episode_id: str, request: Request) -> Episode:
        try:
            return as_seen(request, await manager.stored(episode_id))
        except EpisodeNotFound as exc:
            if exc.owner_url:
                raise RedirectToOwner(exc.owner_url.rstrip("/") + request.url.path) from None
            raise HTTPException(404, detail=str(exc)) from None

    @router.post("/{episode_id}/turns", dependencies=write, summary="Move to the next user turn")
    async def advance(episode_id: str, request: Request) -> TurnResult:
        episode = await open_episode(episode_id, request)
        try:
            return TurnResult(turn=await manager.advance_turn(episode))
        except InvalidRequest as exc:
            raise HTTPException(409, detail=str(exc)) from None

    @router.post("/{episode_id}/score", dependencies=write, summary="Score the episode")
    async def score(episode_id: str, body: ScoreRequest, request: Request) -> RewardBreakdown:
        episode = await open_episode(episode_id, request)
        return await manager.score(episode, body.final_answer)

    @router.delete("/{episode_id}", status_code=204, dependencies=write, summary="Close it")
    async def close(episode_id: str, request: Request) -> Response:
        await open_episode(episode_id, request)
        await manager.close(episode_id)
        return Response(status_code=204)

    return router


async def redirect_to_owner(_: Request, exc: Exception) -> Response:
    """Send the client to the replica holding the episode (307 keeps method and body)."""
    assert isinstance(exc, RedirectToOwner)
    return RedirectResponse(exc.url, status_code=307)


def error_detail(exc: Exception) -> dict[str, Any]:
    return {"detail": str(exc)}
