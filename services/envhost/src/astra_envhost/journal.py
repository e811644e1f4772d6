"""Write-behind persistence of episodes: the hot path never waits for the database.

Episode creation, calls, turns, states and rewards are queued in order and written in one
transaction per flush (every ``interval`` seconds, and on demand). A failed flush keeps its
operations and is retried, so nothing is lost while the database is briefly unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from astra_common.db import Database, Repositories

log = logging.getLogger(__name__)

Operation = Callable[[Repositories], Awaitable[None]]


@dataclass
class EpisodeJournal:
    """An ordered queue of database writes, flushed in batches by a background task."""

    database: Database
    interval: float = 0.5
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
                async with self.database.transaction() as repos:
                    for operation in batch:
                        await operation(repos)
            except Exception:
                self.pending = batch + self.pending
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
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
