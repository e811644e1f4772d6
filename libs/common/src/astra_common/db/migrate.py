"""Schema migrations (Alembic), run programmatically: there is no alembic.ini.

The plain functions (``upgrade``, ``current``, ``make_revision``) are synchronous and run their
own event loop, so they cannot be called from a running loop: async callers either await the
``*_async`` variants or use ``asyncio.to_thread(upgrade, url)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection

from astra_common.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory shipped with the package."""

POSTGRES_MIGRATION_LOCK = 0x61737472  # "astr"
"""Key of the PostgreSQL advisory lock that makes concurrent upgrades (replicas starting
together) run one after another instead of racing to create the same tables."""


def alembic_config(
    database_url: str | URL | None = None, *, migrations_dir: Path = MIGRATIONS_DIR
) -> Config:
    """An Alembic config for the migrations in ``migrations_dir`` (the packaged ones by default).

    ``database_url`` is only read when Alembic opens the database itself; the functions here
    hand it an open connection instead.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    if database_url is not None:
        config.attributes["database_url"] = str(database_url)
    return config


def head() -> str:
    """The newest revision the package ships."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision


async def upgrade_async(database_url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` up to ``revision``; one already there is left
    as it is. On PostgreSQL the whole upgrade is one transaction, and concurrent upgrades wait
    for each other. SQLite has no such lock: migrate it from one process (``astra up`` does)."""
    await _with_connection(database_url, lambda config: command.upgrade(config, revision))


async def current_async(database_url: str | URL) -> str | None:
    """The revision the database is at; None when it has never been migrated."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_revision)
    finally:
        await engine.dispose()


async def make_revision_async(
    database_url: str | URL, message: str, *, migrations_dir: Path = MIGRATIONS_DIR
) -> Path:
    """Write the next numbered revision into ``migrations_dir``, its operations derived by
    comparing the models with the database at ``database_url`` (which must be at head).

    Returns the new file. Autogenerate misses some changes (renames, server defaults):
    review the file by hand before committing it.
    """
    scripts = ScriptDirectory.from_config(alembic_config(migrations_dir=migrations_dir))
    rev_id = f"{len(list(scripts.walk_revisions())) + 1:04d}"
    written: list[Path] = []

    def write(config: Config) -> None:
        script = command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        for one in script if isinstance(script, list) else [script]:
            if one is not None:
                written.append(Path(one.path))

    await _with_connection(database_url, write, migrations_dir=migrations_dir)
    return written[0]


def upgrade(database_url: str | URL, revision: str = "head") -> None:
    """Synchronous ``upgrade_async``: runs its own event loop (not callable from a running one)."""
    asyncio.run(upgrade_async(database_url, revision))


def current(database_url: str | URL) -> str | None:
    """Synchronous ``current_async``: runs its own event loop (not callable from a running one)."""
    return asyncio.run(current_async(database_url))


def make_revision(
    database_url: str | URL, message: str, *, migrations_dir: Path = MIGRATIONS_DIR
) -> Path:
    """Synchronous ``make_revision_async``: runs its own event loop."""
    return asyncio.run(make_revision_async(database_url, message, migrations_dir=migrations_dir))


async def _with_connection(
    database_url: str | URL,
    run: Callable[[Config], None],
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK}
                )

            def run_with(sync_connection: Connection) -> None:
                config = alembic_config(migrations_dir=migrations_dir)
                config.attributes["connection"] = sync_connection
                run(config)

            await connection.run_sync(run_with)
    finally:
        await engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
