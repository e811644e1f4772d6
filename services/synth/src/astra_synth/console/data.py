"""Read-only JSON routes over the shared database that the web console shows: episodes with
their call logs, and the trajectory archive.

Listings are queried here with SQLAlchemy over the tables (read only, newest first); single
records come through the repositories, so they are the same ``astra_proto`` models every
service exchanges.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import func, select

from astra_common.db import Database, NotFoundError
from astra_common.db.models import EpisodeCallRow, EpisodeRow, TrajectoryRow
from astra_common.query_bounds import QueryCount, QueryOffset
from astra_proto import Episode, EpisodeState, Trajectory
from astra_proto.api.synth import EpisodePage, EpisodeSummary, TrajectoryPage, TrajectorySummary

MAX_PAGE = 500


def console_data_router(database: Database) -> APIRouter:
    """Routes ``/episodes`` and ``/trajectories`` (mounted under ``/v1``), read-only."""
    router = APIRouter(tags=["console"])

    @router.get("/episodes", summary="Episodes, newest first (optionally of one environment)")
    async def list_episodes(
        env_id: str | None = None,
        state: EpisodeState | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: QueryOffset = 0,
    ) -> EpisodePage:
        calls = (
            select(func.count())
            .where(EpisodeCallRow.episode_id == EpisodeRow.id)
            .correlate(EpisodeRow)
            .scalar_subquery()
        )
        query = select(EpisodeRow, calls)
        if env_id is not None:
            query = query.where(EpisodeRow.env_id == env_id)
        if state is not None:
            query = query.where(EpisodeRow.state == state.value)
        async with database.transaction() as repos:
            total = await repos.session.scalar(
                select(func.count()).select_from(query.order_by(None).subquery())
            )
            rows = await repos.session.execute(
                query.order_by(EpisodeRow.created_at.desc(), EpisodeRow.id)
                .limit(limit)
                .offset(offset)
            )
            items = [_episode_summary(row, count) for row, count in rows]
        return EpisodePage(total=int(total or 0), items=items)

    @router.get("/episodes/{episode_id}", summary="One episode with its call log and reward")
    async def read_episode(episode_id: str) -> Episode:
        try:
            async with database.transaction() as repos:
                return await repos.episodes.get(episode_id)
        except NotFoundError:
            raise HTTPException(404, detail=f"no episode {episode_id!r} is recorded") from None

    @router.get("/trajectories", summary="Archived trajectories, newest first")
    async def list_trajectories(
        env_id: str | None = None,
        group_id: str | None = None,
        policy_version: QueryCount = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: QueryOffset = 0,
    ) -> TrajectoryPage:
        columns = (
            TrajectoryRow.id,
            TrajectoryRow.env_id,
            TrajectoryRow.episode_id,
            TrajectoryRow.group_id,
            TrajectoryRow.policy_version,
            TrajectoryRow.f1,
            TrajectoryRow.finish_reason,
            TrajectoryRow.created_at,
        )
        query = select(*columns)
        if env_id is not None:
            query = query.where(TrajectoryRow.env_id == env_id)
        if group_id is not None:
            query = query.where(TrajectoryRow.group_id == group_id)
        if policy_version is not None:
            query = query.where(TrajectoryRow.policy_version == policy_version)
        async with database.transaction() as repos:
            total = await repos.session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await repos.session.execute(
                query.order_by(TrajectoryRow.created_at.desc(), TrajectoryRow.id)
                .limit(limit)
                .offset(offset)
            )
            items = [TrajectorySummary.model_validate(row._asdict()) for row in rows]
        return TrajectoryPage(total=int(total or 0), items=items)

    @router.get("/trajectories/{trajectory_id}", summary="One trajectory: messages and reward")
    async def read_trajectory(trajectory_id: str) -> Trajectory:
        try:
            async with database.transaction() as repos:
                return await repos.trajectories.get(trajectory_id)
        except NotFoundError:
            raise HTTPException(
                404, detail=f"no trajectory {trajectory_id!r} is archived"
            ) from None

    return router


def _episode_summary(row: EpisodeRow, calls: int) -> EpisodeSummary:
    reward = row.reward or {}
    f1 = reward.get("f1")
    return EpisodeSummary(
        id=row.id,
        env_id=row.env_id,
        state=EpisodeState(row.state),
        seed=row.seed,
        turn=row.turn,
        calls=int(calls),
        f1=float(f1) if isinstance(f1, int | float) else None,
        created_at=row.created_at,
        last_active_at=row.last_active_at,
    )
