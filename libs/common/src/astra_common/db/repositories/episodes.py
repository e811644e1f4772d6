"""Episodes and their tool-call logs."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.errors import ConflictError, NotFoundError
from astra_common.db.models import EpisodeCallRow, EpisodeRow
from astra_common.db.repositories._common import (
    DEFAULT_LIMIT,
    check_page,
    get_row,
    insert_if_absent,
    utc_now,
)
from astra_common.db.repositories.environments import EnvironmentRepository
from astra_proto import Episode, EpisodeState, RewardBreakdown, ToolCallRecord


class EpisodeRepository:
    """Episodes and their tool-call logs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, episode: Episode, *, owner_url: str | None = None) -> Episode:
        """Store a new episode (and any calls it carries) held by the replica at ``owner_url``.

        Returns ``episode`` as given (nothing is read back). ``NotFoundError`` when its
        environment is not registered; ``ConflictError`` when the episode id is taken.
        """
        if not await EnvironmentRepository(self.session).exists(episode.env_id):
            raise NotFoundError("environment", episode.env_id)
        inserted = await insert_if_absent(
            self.session, EpisodeRow, _episode_values(episode, owner_url)
        )
        if not inserted:
            raise ConflictError(f"episode {episode.id!r} already exists")
        if episode.calls:
            await self.session.execute(
                insert(EpisodeCallRow), [_call_values(episode.id, call) for call in episode.calls]
            )
        return episode

    async def create_many(self, episodes: Sequence[tuple[Episode, str | None]]) -> None:
        """Store new episodes, each with the URL of the replica holding it, in one statement.

        The bulk path of a write-behind journal: one multi-row ``INSERT`` (plus one for the
        calls they carry), no existence checks, nothing read back. ``ConflictError`` when the
        database refuses a row (an unregistered environment, an episode id already taken);
        then nothing of the statement is stored.
        """
        if not episodes:
            return
        rows = [_episode_values(episode, owner) for episode, owner in episodes]
        calls = [_call_values(e.id, call) for e, _ in episodes for call in e.calls]
        try:
            await self.session.execute(insert(EpisodeRow), rows)
            if calls:
                await self.session.execute(insert(EpisodeCallRow), calls)
        except IntegrityError as exc:
            raise ConflictError(
                f"the database refused {len(rows)} new episodes: {exc.orig}"
            ) from exc

    async def get(self, episode_id: str) -> Episode:
        """The episode with its calls in ``seq`` order; ``NotFoundError`` when there is none."""
        row = await get_row(self.session, EpisodeRow, "episode", episode_id)
        calls = await self.session.scalars(
            select(EpisodeCallRow)
            .where(EpisodeCallRow.episode_id == episode_id)
            .order_by(EpisodeCallRow.seq)
            .execution_options(populate_existing=True)
        )
        return Episode(
            id=row.id,
            env_id=row.env_id,
            seed=row.seed,
            state=EpisodeState(row.state),
            mcp_url=row.mcp_url,
            tools=row.tools,
            distractor_tools=row.distractor_tools,
            turn=row.turn,
            calls=[_call(call) for call in calls],
            reward=RewardBreakdown.model_validate(row.reward) if row.reward is not None else None,
            created_at=row.created_at,
            last_active_at=row.last_active_at,
        )

    async def owner_url(self, episode_id: str) -> str | None:
        """URL of the envhost replica holding the episode; ``NotFoundError`` when none."""
        return (await get_row(self.session, EpisodeRow, "episode", episode_id)).owner_url

    async def append_call(
        self,
        episode_id: str,
        tool_name: str,
        *,
        latency_ms: float,
        arguments: dict[str, Any] | None = None,
        result: Any = None,
        error: str | None = None,
        distractor: bool = False,
        at: datetime | None = None,
    ) -> ToolCallRecord:
        """Append a call at the next position of the log (0 first) and touch the episode.

        Concurrent appends to one episode get distinct, gap-free positions: the episode row is
        written first, which serialises appenders until the transaction ends.
        ``NotFoundError`` when there is no such episode.
        """
        record = ToolCallRecord(
            seq=0,
            tool_name=tool_name,
            arguments=arguments or {},
            result=result,
            error=error,
            latency_ms=latency_ms,
            distractor=distractor,
            at=at or utc_now(),
        )
        # The write comes before the read on purpose: it takes the row lock (PostgreSQL) or the
        # database write lock (SQLite), so no other appender can read the same max(seq).
        await self.touch(episode_id)
        next_seq = await self.session.scalar(
            select(func.coalesce(func.max(EpisodeCallRow.seq) + 1, 0)).where(
                EpisodeCallRow.episode_id == episode_id
            )
        )
        record = record.model_copy(update={"seq": int(next_seq or 0)})
        await self.session.execute(insert(EpisodeCallRow).values(_call_values(episode_id, record)))
        return record

    async def record_calls(self, episode_id: str, calls: Sequence[ToolCallRecord]) -> None:
        """Store calls at the positions they carry (a write-behind journal's batch).

        ``ConflictError`` (from the database) when a position is already taken.
        """
        if not calls:
            return
        await self.session.execute(
            insert(EpisodeCallRow), [_call_values(episode_id, call) for call in calls]
        )
        await self.touch(episode_id, at=max(call.at for call in calls))

    async def record_calls_of_episodes(self, calls: Sequence[tuple[str, ToolCallRecord]]) -> None:
        """Store calls of any episodes, as ``(episode_id, call)`` at the positions they carry,
        and mark each episode active at its latest call: one multi-row ``INSERT`` and one
        batched ``UPDATE`` (a write-behind journal's flush).

        ``ConflictError`` when the database refuses a row (a position already taken, an episode
        that does not exist); then nothing of the statement is stored.
        """
        if not calls:
            return
        latest: dict[str, datetime] = {}
        for episode_id, call in calls:
            if episode_id not in latest or call.at > latest[episode_id]:
                latest[episode_id] = call.at
        try:
            await self.session.execute(
                insert(EpisodeCallRow),
                [_call_values(episode_id, call) for episode_id, call in calls],
            )
        except IntegrityError as exc:
            raise ConflictError(f"the database refused {len(calls)} calls: {exc.orig}") from exc
        # Core executemany on the connection: the ORM's bulk UPDATE would match rows by key.
        connection = await self.session.connection()
        await connection.execute(
            update(EpisodeRow)
            .where(EpisodeRow.id == bindparam("touched_id"))
            .values(last_active_at=bindparam("touched_at")),
            [{"touched_id": key, "touched_at": at} for key, at in latest.items()],
        )

    async def set_turn(self, episode_id: str, turn: int) -> None:
        """Record the episode's current user turn."""
        await self._update(episode_id, turn=turn)

    async def set_state(self, episode_id: str, state: EpisodeState) -> None:
        """Move the episode to ``state``; ``NotFoundError`` when there is no such episode."""
        await self._update(episode_id, state=state.value)

    async def set_reward(self, episode_id: str, reward: RewardBreakdown | None) -> None:
        """Record (or clear) the episode's reward; the state is left to ``set_state``."""
        await self._update(episode_id, reward=reward.model_dump(mode="json") if reward else None)

    async def touch(self, episode_id: str, at: datetime | None = None) -> None:
        """Mark the episode active at ``at`` (now by default)."""
        await self._update(episode_id, last_active_at=at or utc_now())

    async def list_idle(
        self,
        before: datetime,
        *,
        owner_url: str | None = None,
        states: Collection[EpisodeState] | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> builtins.list[str]:
        """Ids of episodes last active before ``before``, longest idle first.

        Optionally only those held by the replica at ``owner_url`` or in one of ``states``.
        """
        check_page(limit, 0)
        query = select(EpisodeRow.id).where(EpisodeRow.last_active_at < before)
        if owner_url is not None:
            query = query.where(EpisodeRow.owner_url == owner_url)
        if states is not None:
            query = query.where(EpisodeRow.state.in_([state.value for state in states]))
        query = query.order_by(EpisodeRow.last_active_at, EpisodeRow.id).limit(limit)
        return list(await self.session.scalars(query))

    async def delete(self, episode_id: str) -> bool:
        """Delete the episode and its call log; False when it did not exist (deleting twice is
        harmless, as replicas may race to expire the same episode)."""
        result = await self.session.execute(
            delete(EpisodeRow)
            .where(EpisodeRow.id == episode_id)
            .returning(EpisodeRow.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def _update(self, episode_id: str, **values: Any) -> None:
        result = await self.session.execute(
            update(EpisodeRow)
            .where(EpisodeRow.id == episode_id)
            .values(values)
            .returning(EpisodeRow.id)
            .execution_options(synchronize_session=False)
        )
        if result.first() is None:
            raise NotFoundError("episode", episode_id)


def _episode_values(episode: Episode, owner_url: str | None) -> dict[str, Any]:
    return {
        "id": episode.id,
        "env_id": episode.env_id,
        "seed": episode.seed,
        "state": episode.state.value,
        "mcp_url": episode.mcp_url,
        "owner_url": owner_url,
        "tools": [tool.model_dump(mode="json") for tool in episode.tools],
        "distractor_tools": episode.distractor_tools,
        "turn": episode.turn,
        "reward": episode.reward.model_dump(mode="json") if episode.reward else None,
        "created_at": episode.created_at,
        "last_active_at": episode.last_active_at,
    }


def _call_values(episode_id: str, call: ToolCallRecord) -> dict[str, Any]:
    return {"episode_id": episode_id, **call.model_dump(mode="json"), "at": call.at}


def _call(row: EpisodeCallRow) -> ToolCallRecord:
    return ToolCallRecord(
        seq=row.seq,
        tool_name=row.tool_name,
        arguments=row.arguments,
        result=row.result,
        error=row.error,
        latency_ms=row.latency_ms,
        turn=row.turn,
        distractor=row.distractor,
        at=row.at,
    )
