"""Base class and shared helpers of every contract model."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
"""Version of the wire contracts; bumped on any change an older reader would misread."""


DB_INT_MAX = 2**31 - 1
"""Largest integer a contract field compared with a database column may hold (PostgreSQL's
``integer``; a larger one would fail inside the driver)."""

DbCount = Annotated[int, Field(ge=0, le=DB_INT_MAX)]
"""A non-negative integer field stored in or compared with a database column."""


class ContractModel(BaseModel):
    """A model that crosses a process boundary.

    Every contract is inbound somewhere (REST body, MCP call, stream entry, database row), so
    unknown fields are an error rather than silently dropped.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte form that content hashes are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
