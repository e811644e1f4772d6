"""envhost REST routes of episodes over HTTP (the rollout path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

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


class EpisodeSummary(BaseModel):
    """One open episode in a listing."""

    id: str
    env_id: str
    state: str
    turn: int
    calls: int
    mcp_url: str
    last_active_at: str


class TurnResult(BaseModel):
    """The turn an episode moved to."""

    turn: int


class RedirectToOwner(Exception):
    """The episode lives on another replica."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def episodes_router(manager: EpisodeManager, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes creating, reading, advancing, scoring and closing episodes."""
    router = APIRouter(prefix="/episodes", tags=["episodes"])
    write = [Depends(auth)]

    async def open_episode(episode_id: str, request: Request) -> LiveEpisode:
        try:
            return await manager.get(episode_id)
        except EpisodeNotFound as exc:
            if exc.owner_url:
                raise RedirectToOwner(exc.owner_url.rstrip("/") + request.url.path) from None
            raise HTTPException(404, detail=str(exc)) from None

    @router.post("", status_code=201, dependencies=write, summary="Open a fresh episode")
    async def create_episode(body: EpisodeRequest) -> Episode:
        try:
            episode = await manager.create(body)
        except UnknownEnvironment as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except InvalidRequest as exc:
            raise HTTPException(422, detail=str(exc)) from None
        except CapacityError as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from None
        return episode.to_model()

    @router.get("", summary="Open episodes held by this replica")
    async def list_episodes() -> list[EpisodeSummary]:
        return [
            EpisodeSummary(
                id=e.id,
                env_id=e.spec.id,
                state=e.state.value,
                turn=e.turn,
                calls=len(e.calls),
                mcp_url=e.mcp_url,
                last_active_at=e.last_active_at.isoformat(),
            )
            for e in manager.live.values()
        ]

    @router.get("/{episode_id}", summary="An episode with its call log")
    async def read_episode(episode_id: str, request: Request) -> Episode:
        try:
            return await manager.stored(episode_id)
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
