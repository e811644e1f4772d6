"""One object per process for the database: an engine, its sessions, and the repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from astra_common.db.engine import create_engine, create_session_factory
from astra_common.db.repositories import (
    EnvironmentRepository,
    EpisodeRepository,
    JobRepository,
    TrajectoryArchive,
)


@dataclass(frozen=True)
class Repositories:
    """Every repository over one session, so their writes share one transaction."""

    session: AsyncSession
    jobs: JobRepository
    environments: EnvironmentRepository
    episodes: EpisodeRepository
    trajectories: TrajectoryArchive

    @classmethod
    def on(cls, session: AsyncSession) -> Repositories:
        """The repositories over ``session``."""
        return cls(
            session=session,
            jobs=JobRepository(session),
            environments=EnvironmentRepository(session),
            episodes=EpisodeRepository(session),
            trajectories=TrajectoryArchive(session),
        )


class Database:
    """An engine and its session factory. Create one per process; ``dispose`` it at shutdown.

    ::

        async with Database(url) as db, db.transaction() as repos:
            await repos.jobs.create(job)

    The schema is not created here: run ``astra-db upgrade`` (or ``migrate.upgrade``) first.
    """

    def __init__(self, database_url: str | URL, *, echo: bool = False) -> None:
        self.engine: AsyncEngine = create_engine(database_url, echo=echo)
        self.sessions: async_sessionmaker[AsyncSession] = create_session_factory(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        """Repositories over a fresh session; commits when the block ends, rolls back on error."""
        async with self.sessions.begin() as session:
            yield Repositories.on(session)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.dispose()
