"""The trajectory archive."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.models import TrajectoryRow
from astra_common.db.repositories._common import (
    DEFAULT_LIMIT,
    check_page,
    get_row,
    insert_if_absent,
    utc_now,
)
from astra_proto import Trajectory


class TrajectoryArchive:
    """Every trajectory ever published, keyed by its record id (the stream's idempotency key)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def archive(self, trajectory: Trajectory, *, stream_entry_id: str | None = None) -> bool:
        """Store the trajectory; True when stored now, False when its id was archived already
        (a redelivered stream entry is harmless)."""
        return await insert_if_absent(
            self.session,
            TrajectoryRow,
            {
                "id": trajectory.id,
                "env_id": trajectory.env_id,
                "episode_id": trajectory.episode_id,
                "group_id": trajectory.group_id,
                "policy_version": trajectory.policy_version,
                "f1": trajectory.reward.f1 if trajectory.reward else None,
                "finish_reason": trajectory.finish_reason.value,
                "payload": trajectory.model_dump(mode="json"),
                "stream_entry_id": stream_entry_id,
                "created_at": utc_now(),
            },
        )

    async def prune(self, archived_before: datetime) -> int:
        """Delete every trajectory archived before ``archived_before``; how many were deleted."""
        result = await self.session.execute(
            delete(TrajectoryRow).where(TrajectoryRow.created_at < archived_before)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def get(self, trajectory_id: str) -> Trajectory:
        """The trajectory; ``NotFoundError`` when none has that id."""
        row = await get_row(self.session, TrajectoryRow, "trajectory", trajectory_id)
        return Trajectory.model_validate(row.payload)

    async def list(
        self,
        *,
        group_id: str | None = None,
        env_id: str | None = None,
        policy_version: int | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> builtins.list[Trajectory]:
        """Trajectories matching every filter given, in archiving order."""
        check_page(limit, offset)
        query = select(TrajectoryRow.payload)
        if group_id is not None:
            query = query.where(TrajectoryRow.group_id == group_id)
        if env_id is not None:
            query = query.where(TrajectoryRow.env_id == env_id)
        if policy_version is not None:
            query = query.where(TrajectoryRow.policy_version == policy_version)
        query = query.order_by(TrajectoryRow.created_at, TrajectoryRow.id)
        payloads = await self.session.scalars(query.limit(limit).offset(offset))
        return [Trajectory.model_validate(payload) for payload in payloads]
