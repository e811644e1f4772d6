"""Async engines and sessions for the ASTRA database (SQLite file or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from astra_common.db.errors import DatabaseError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.astra/astra.db"
"""Where the database lives when nothing is configured: a SQLite file under ``.astra/``."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before failing."""

POSTGRES_CONNECT_TIMEOUT_S = 10
"""Connect timeout for PostgreSQL, unless the URL sets ``connect_timeout`` itself."""

_ASYNC_DRIVERS = {"sqlite": {"aiosqlite"}, "postgresql": {"psycopg", "asyncpg"}}
_DEFAULT_ASYNC_DRIVER = {"sqlite": "aiosqlite", "postgresql": "psycopg"}


def async_database_url(database_url: str | URL) -> URL:
    """The URL with an async driver: ``sqlite:///`` → aiosqlite, ``postgresql://`` → psycopg.

    URLs that already name an async driver are returned unchanged. Raises ``DatabaseError``
    for anything that is neither SQLite nor PostgreSQL, or is not a URL at all.
    """
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {database_url!r}") from exc
    backend = url.get_backend_name()
    if backend == "postgres":  # Heroku-style alias that SQLAlchemy no longer accepts
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise DatabaseError(
            f"unsupported database {url.drivername!r}: use sqlite:///PATH or postgresql://..."
        )
    driver = url.get_driver_name() if "+" in url.drivername else ""
    if driver not in _ASYNC_DRIVERS[backend]:
        driver = _DEFAULT_ASYNC_DRIVER[backend]
    return url.set(drivername=f"{backend}+{driver}")


def display_url(database_url: str | URL) -> str:
    """The URL as it may appear in logs and error messages: the password is masked."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL points at; None for in-memory databases and non-SQLite URLs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def create_engine(database_url: str | URL, *, echo: bool = False) -> AsyncEngine:
    """An async engine for ``database_url`` (sync driver names are switched to async ones).

    SQLite: the file's directory is created; every connection enforces foreign keys, uses WAL
    journaling (readers do not block the writer) and waits up to ``SQLITE_BUSY_TIMEOUT_MS`` for
    a lock. PostgreSQL: connections are checked before use and connecting times out.
    The caller owns the engine and must ``await engine.dispose()`` when done.
    """
    url = async_database_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = _create_async_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        return engine
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    return _create_async_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine`` whose objects stay readable after commit.

    Use ``async with factory.begin() as session:`` for one transaction that commits on success
    and rolls back on error.
    """
    return async_sessionmaker(engine, expire_on_commit=False)
