"""Helpers the repositories share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.errors import DatabaseError, NotFoundError
from astra_common.db.models import Base

DEFAULT_LIMIT = 100
"""Rows a list call returns when no limit is given."""

_RowT = TypeVar("_RowT", bound=Base)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


async def insert_if_absent(
    session: AsyncSession, entity: type[Base], values: dict[str, Any]
) -> bool:
    """Insert one row unless its primary key is taken; True when the row was inserted."""
    keys = inspect(entity).primary_key
    dialect = session.get_bind().dialect.name
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(entity).values(values)
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    elif dialect == "sqlite":
        statement = sqlite.insert(entity).values(values)
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    else:
        raise DatabaseError(f"unsupported database dialect {dialect!r}")
    result = await session.execute(statement.returning(*keys))
    return result.first() is not None


async def get_row(session: AsyncSession, entity: type[_RowT], kind: str, row_id: str) -> _RowT:
    """The row with primary key ``row_id``, freshly read; ``NotFoundError`` naming ``kind``."""
    row = await session.get(entity, row_id, populate_existing=True)
    if row is None:
        raise NotFoundError(kind, row_id)
    return row


def check_page(limit: int, offset: int) -> None:
    """Refuse negative paging arguments, which databases treat inconsistently."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must be non-negative")
