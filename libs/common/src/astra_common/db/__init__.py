"""The ASTRA database: schema, async engine, repositories over ``astra_proto`` models, migrations.

The everyday pieces are re-exported here. Migrations live in ``astra_common.db.migrate``, which
this package does not import, because Alembic is slow to import.
"""

from astra_common.db.database import Database, Repositories
from astra_common.db.engine import DEFAULT_DATABASE_URL, create_engine, create_session_factory
from astra_common.db.errors import ConflictError, DatabaseError, ImmutableError, NotFoundError
from astra_common.db.repositories import (
    EnvironmentFilter,
    EnvironmentRepository,
    EpisodeRepository,
    JobRepository,
    Registration,
    TrajectoryArchive,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "ConflictError",
    "Database",
    "DatabaseError",
    "EnvironmentFilter",
    "EnvironmentRepository",
    "EpisodeRepository",
    "ImmutableError",
    "JobRepository",
    "NotFoundError",
    "Registration",
    "Repositories",
    "TrajectoryArchive",
    "create_engine",
    "create_session_factory",
]
