"""Errors of the persistence layer; every one is a ``DatabaseError``."""

from __future__ import annotations


class DatabaseError(Exception):
    """Base of every error the persistence layer raises on purpose."""


class NotFoundError(DatabaseError, LookupError):
    """The record asked for does not exist."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(f"{kind} {record_id!r} not found")
        self.kind = kind
        self.record_id = record_id


class ConflictError(DatabaseError):
    """The write conflicts with what is stored (e.g. a record with that id already exists)."""


class ImmutableError(ConflictError):
    """The write would change something that cannot change (a finished job, a spec's content)."""
