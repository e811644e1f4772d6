"""Bounds on integers that reach the database, for query parameters and request bodies.

PostgreSQL's ``integer`` holds at most 2**31 - 1 and SQLite's at most 2**63 - 1; a larger
number in a query would fail inside the driver (a 500). These types turn it into a 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from astra_proto.base import DB_INT_MAX, DbCount

QueryOffset = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="Items to skip.")]
"""The ``offset`` query parameter of a listing."""

QueryCount = Annotated[int | None, Query(ge=0, le=DB_INT_MAX)]
"""An optional non-negative integer query parameter compared with a database column."""

__all__ = ["DB_INT_MAX", "DbCount", "QueryCount", "QueryOffset"]
