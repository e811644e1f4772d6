"""Write-behind persistence of episodes: the hot path never waits for the database.

Episode creation, calls, turns, states and rewards are queued in order and written in one
transaction per flush (every ``interval`` seconds, and on demand). New episodes and calls, the
bulk of the writes, go in as multi-row statements: one ``INSERT`` of the episodes created since
the last flush, one of the calls and one batched ``UPDATE`` of the episodes' activity, instead
of several statements per call. A failed flush keeps its operations and is retried, so nothing
is lost while the database is briefly unavailable.

A flush of many rows is split into a few statements of at least ``rows_per_statement`` rows:
a statement's rows (and the driver's copies of them) are alive together while it runs, and
thousands of them outlive enough young-generation collections to be promoted to the oldest
one; though they die right after, they make the interpreter collect every live object (the
episodes' call logs included) in full more often. At most ``statements_per_run`` statements
per kind keep the flush's round trips through a busy event loop few, so the journal keeps up
with any call rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from astra_common.db import Database, DatabaseError, Repositories
from astra_proto import Episode, ToolCallRecord

log = logging.getLogger(__name__)

Operation = Callable[[Repositories], Awaitable[None]]
Row = TypeVar("Row")

REFUSED = (DatabaseError, IntegrityError)
"""Errors meaning the database refuses a write for good (retrying would fail the same way)."""


@dataclass(frozen=True, slots=True)
class EpisodeCreated:
    """Store a new episode (an ``Operation``; consecutive ones are written in bulk)."""

    episode: Episode
    owner_url: str | None

    async def __call__(self, repos: Repositories) -> None:
        await repos.episodes.create(self.episode, owner_url=self.owner_url)


@dataclass(frozen=True, slots=True)
class CallRecorded:
    """Store one call of an episode (an ``Operation``; consecutive ones are written in bulk)."""

    episode_id: str
    call: ToolCallRecord

    async def __call__(self, repos: Repositories) -> None:
        await repos.episodes.record_calls(self.episode_id, [self.call])


@dataclass
class EpisodeJournal:
    """An ordered queue of database writes, flushed in batches by a background task."""

    database: Database
    interval: float = 0.5
    rows_per_statement: int = 500
    statements_per_run: int = 4
    pending: list[Operation] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, operation: Operation) -> None:
        """Queue one write (applied after every write queued before it)."""
        self.pending.append(operation)

    async def flush(self) -> None:
        """Apply every queued write now, in one transaction; on failure keep them for later."""
        async with self._lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            try:
                await self._apply(batch)
            except REFUSED:
                # A write the database refuses for good (a conflict, a missing row) must not
                # block the ones after it: apply them one by one and drop only the refused.
                await self._apply_one_by_one(batch)
            except Exception:
                self.pending = batch + self.pending
                raise

    async def _apply(self, batch: list[Operation]) -> None:
        """One transaction; runs of new episodes and calls become multi-row statements.

        A run's episodes are inserted before its calls, so a call of an episode created in the
        same run finds it; any other operation ends the run, which keeps the queue's order.
        """
        async with self.database.transaction() as repos:
            created: list[tuple[Episode, str | None]] = []
            calls: list[tuple[str, ToolCallRecord]] = []

            async def write_run() -> None:
                for new_episodes in self._statements(created):
                    await repos.episodes.create_many(new_episodes)
                for new_calls in self._statements(calls):
                    await repos.episodes.record_calls_of_episodes(new_calls)
                created.clear()
                calls.clear()

            for operation in batch:
                if isinstance(operation, EpisodeCreated):
                    created.append((operation.episode, operation.owner_url))
                elif isinstance(operation, CallRecorded):
                    calls.append((operation.episode_id, operation.call))
                else:
                    await write_run()
                    await operation(repos)
            await write_run()

    def _statements(self, rows: list[Row]) -> list[list[Row]]:
        """``rows`` in consecutive parts, one per statement (see the module doc)."""
        size = max(self.rows_per_statement, -(-len(rows) // self.statements_per_run))
        return [rows[start : start + size] for start in range(0, len(rows), size)]

    async def _apply_one_by_one(self, batch: list[Operation]) -> None:
        for index, operation in enumerate(batch):
            try:
                async with self.database.transaction() as repos:
                    await operation(repos)
            except REFUSED:
                log.exception("episode journal dropped a write the database refused")
            except Exception:
                self.pending = batch[index:] + self.pending
                raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("episode journal flush failed; %d writes kept", len(self.pending))

    def start(self) -> None:
        """Start flushing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="episode-journal")

    async def stop(self) -> None:
        """Stop the background task and flush what is left."""
        if self._task is not None:
            async with self._lock:  # let a flush in progress finish its transaction first
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
