"""Alembic environment of the ASTRA database.

``astra_common.db.migrate`` hands over an open connection in ``config.attributes["connection"]``
(the async engine runs this file through ``connection.run_sync``). Without one, the URL in
``config.attributes["database_url"]`` or the ``sqlalchemy.url`` option is used.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from astra_common.db.engine import DEFAULT_DATABASE_URL, async_database_url, create_engine
from astra_common.db.models import Base


def _database_url() -> str:
    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return str(url or DEFAULT_DATABASE_URL)


def _run_on_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_on_connection)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    url = async_database_url(_database_url())
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_on_connection(connection)
    else:
        asyncio.run(_run_on_url(_database_url()))


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
