"""Async repositories: read and write ``astra_proto`` models through one ``AsyncSession``.

A repository never commits: the caller owns the transaction, so several writes (even through
several repositories on one session) commit or roll back together::

    async with sessions.begin() as session:
        await JobRepository(session).update(job_id, state=JobState.RUNNING)

Idempotent inserts use ``INSERT ... ON CONFLICT DO NOTHING`` rather than catching integrity
errors, because a failed statement aborts the caller's whole transaction on PostgreSQL.
"""

from astra_common.db.repositories._common import DEFAULT_LIMIT, utc_now
from astra_common.db.repositories.environments import (
    EnvironmentFilter,
    EnvironmentRepository,
    Registration,
)
from astra_common.db.repositories.episodes import EpisodeRepository
from astra_common.db.repositories.jobs import TERMINAL_JOB_STATES, JobRepository, StaleJob
from astra_common.db.repositories.trajectories import TrajectoryArchive

__all__ = [
    "DEFAULT_LIMIT",
    "TERMINAL_JOB_STATES",
    "EnvironmentFilter",
    "EnvironmentRepository",
    "EpisodeRepository",
    "JobRepository",
    "Registration",
    "StaleJob",
    "TrajectoryArchive",
    "utc_now",
]
