"""The trajectory archiver: the ``archive`` consumer group of ``astra:trajectories``.

Every trajectory that rollout publishes is stored in the database's ``trajectories`` table,
which the console's Trajectories page reads. The archiver reads the stream in batches,
writes each batch in one transaction and acknowledges it only after the commit, so a crash
between the two leaves the entries pending: another archiver (or this one, after a restart
under a new name) takes them over with ``XAUTOCLAIM`` once they were idle for
``archive_reclaim_idle_s``. Writing again is harmless: a trajectory is stored once, keyed by
its id, which is the envelope's record id. Transient Redis and database faults are retried
(``retry_transient``); an entry that keeps failing its write goes to the dead-letter stream
after ``MAX_DELIVERIES`` deliveries. Trajectories older than ``archive_retention_days`` are
pruned. It runs inside the synth API (see ``with_trajectory_archiver``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import TypeVar

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.exceptions import ResponseError

from astra_common.db import Database
from astra_common.db.repositories import utc_now
from astra_common.retry import DEFAULT_GIVE_UP_AFTER_S, is_transient, retry_transient
from astra_common.service import Lifespan
from astra_common.streams import Delivery, StreamConsumer
from astra_common.streams.layout import as_text
from astra_proto import TRAJECTORY_STREAM, Trajectory
from astra_synth.settings import SynthSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

ARCHIVE_GROUP = "archive"
"""The consumer group of ``astra:trajectories`` that the archivers share."""

BATCH_SIZE = 100
"""Entries read (and stored in one transaction) per pass: bounds the archiver's memory."""

MAX_DELIVERIES = 5
"""Deliveries of one entry before it goes to the dead-letter stream instead of the table."""

READ_BLOCK_MS = 2000
"""How long one read waits for new entries before the next pass (reclaim, prune) runs."""

REDIS_SOCKET_TIMEOUT_S = 30.0
"""The archiver's Redis read timeout; well above ``READ_BLOCK_MS``."""

PRUNE_EVERY_S = 600.0
"""How often expired trajectories are deleted."""

FORGET_CONSUMER_IDLE = timedelta(days=1)
"""A consumer of the group idle this long with nothing pending (an archiver that stopped) is
removed from the group, so restarts do not pile up names."""

FAILED_PASS_PAUSE_S = 5.0
"""Pause after a pass failed (a dependency stayed down past the retry limit)."""

# Redis's answers when the stream (and so its groups) was deleted, before or during a read.
_STREAM_GONE = ("NOGROUP", "UNBLOCKED the stream key no longer exists")


class TrajectoryArchiver:
    """One consumer of the ``archive`` group, storing what it reads in the database."""

    def __init__(
        self,
        redis: aioredis.Redis,
        database: Database,
        *,
        consumer_name: str,
        retention: timedelta,
        reclaim_idle: timedelta,
        batch_size: int = BATCH_SIZE,
        block_ms: int = READ_BLOCK_MS,
        give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.consumer = StreamConsumer(
            redis, TRAJECTORY_STREAM, ARCHIVE_GROUP, consumer_name, Trajectory
        )
        self.database = database
        self._redis = redis
        self.retention = retention
        self._reclaim_idle_ms = max(int(reclaim_idle.total_seconds() * 1000), 0)
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._give_up_after_s = give_up_after_s
        self._group_ready = False

    @classmethod
    def from_settings(
        cls, redis: aioredis.Redis, database: Database, settings: SynthSettings
    ) -> TrajectoryArchiver:
        """An archiver named after this host and process, configured by ``settings``."""
        name = f"synth@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return cls(
            redis,
            database,
            consumer_name=name,
            retention=timedelta(days=settings.archive_retention_days),
            reclaim_idle=timedelta(seconds=settings.archive_reclaim_idle_s),
        )

    async def archive_pass(self) -> int:
        """One pass: take over entries left pending by a dead archiver, or else read new ones
        (waiting up to ``block_ms``); store them and acknowledge. Returns how many
        trajectories were stored now (repeats of stored ones are not counted)."""
        if not self._group_ready:
            await self._retry(self.consumer.ensure_group, "create the archive group")
            self._group_ready = True
        deliveries = await self._retry(
            lambda: self.consumer.reclaim(
                self._reclaim_idle_ms, self._batch_size, max_deliveries=MAX_DELIVERIES
            ),
            "reclaim abandoned trajectory entries",
        )
        if not deliveries:
            deliveries = await self._retry(
                lambda: self.consumer.read(self._batch_size, self._block_ms),
                "read trajectories",
            )
        return await self.process(deliveries)

    async def process(self, deliveries: Sequence[Delivery[Trajectory]]) -> int:
        """Store ``deliveries``, then acknowledge those stored; how many were new.

        An entry whose write fails for good stays pending (to be retried by a reclaim, and
        dead-lettered after ``MAX_DELIVERIES``); the others are stored and acknowledged.
        """
        stored, new = await self.store(deliveries)
        if stored:
            await self._retry(lambda: self.consumer.ack(stored), "acknowledge trajectories")
        return new

    async def store(
        self, deliveries: Sequence[Delivery[Trajectory]]
    ) -> tuple[list[Delivery[Trajectory]], int]:
        """Write ``deliveries`` to the archive (one transaction, or one per entry when the
        batch fails for a reason other than an outage); the deliveries now safely stored and
        how many of them were new."""
        if not deliveries:
            return [], 0
        try:
            new = await self._retry(lambda: self._write(deliveries), "archive trajectories")
            return list(deliveries), new
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("archiving a batch failed (%s); storing its entries one by one", exc)
        stored: list[Delivery[Trajectory]] = []
        new = 0
        for delivery in deliveries:
            try:
                new += await self._retry(self._writer([delivery]), "archive a trajectory")
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning(
                    "trajectory %s (entry %s, delivery %d) cannot be archived: %s: %s",
                    delivery.record_id,
                    delivery.entry_id,
                    delivery.delivery_count,
                    type(exc).__name__,
                    exc,
                )
                continue
            stored.append(delivery)
        return stored, new

    async def prune(self) -> int:
        """Delete trajectories archived longer ago than the retention; how many."""

        async def delete() -> int:
            async with self.database.transaction() as repos:
                return await repos.trajectories.prune(utc_now() - self.retention)

        deleted = await self._retry(delete, "prune the trajectory archive")
        if deleted:
            log.info(
                "pruned %d trajectories archived before the retention of %s",
                deleted,
                self.retention,
            )
        return deleted

    async def forget_stopped_consumers(self, idle: timedelta = FORGET_CONSUMER_IDLE) -> list[str]:
        """Remove consumers of the group that hold no pending entries and were idle for
        ``idle`` (archivers that stopped; a live one reads every few seconds); their names."""
        idle_ms = idle.total_seconds() * 1000
        consumers = await self._retry(
            lambda: self._redis.xinfo_consumers(TRAJECTORY_STREAM, ARCHIVE_GROUP),
            "list the archive group's consumers",
        )
        forgotten = []
        for info in consumers:
            name = as_text(info["name"])
            if name == self.consumer.consumer_name or int(info["pending"]) > 0:
                continue
            if int(info["idle"]) < idle_ms:
                continue
            await self._retry(
                self._forgetter(name), f"remove consumer {name} from the archive group"
            )
            forgotten.append(name)
        return forgotten

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set, pruning every ``PRUNE_EVERY_S``. A pass that fails
        (a dependency down past the retry limit) is logged and the next one follows."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while not stop.is_set():
            try:
                if loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_EVERY_S
                    await self.prune()
                    if self._group_ready:
                        await self.forget_stopped_consumers()
                await self.archive_pass()
            except Exception as exc:
                if isinstance(exc, ResponseError) and str(exc).startswith(_STREAM_GONE):
                    # The stream was deleted: create the group again on the next pass.
                    self._group_ready = False
                    continue
                log.warning("trajectory archiver pass failed: %s: %s", type(exc).__name__, exc)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FAILED_PASS_PAUSE_S)

    def _forgetter(self, name: str) -> Callable[[], Awaitable[int]]:
        # XGROUP DELCONSUMER drops the consumer's pending entries too: only called for ones
        # that hold none. A consumer removed while alive is recreated by its next read.
        return lambda: self._redis.xgroup_delconsumer(TRAJECTORY_STREAM, ARCHIVE_GROUP, name)

    def _writer(self, deliveries: Sequence[Delivery[Trajectory]]) -> Callable[[], Awaitable[int]]:
        return lambda: self._write(deliveries)

    async def _write(self, deliveries: Sequence[Delivery[Trajectory]]) -> int:
        async with self.database.transaction() as repos:
            new = 0
            for delivery in deliveries:
                if await repos.trajectories.archive(
                    delivery.payload, stream_entry_id=delivery.entry_id
                ):
                    new += 1
            return new

    async def _retry(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        return await retry_transient(operation, what=what, give_up_after_s=self._give_up_after_s)


def with_trajectory_archiver(
    inner: Lifespan, database: Database, settings: SynthSettings
) -> Lifespan:
    """``inner`` with a trajectory archiver running beside the app (unless
    ``archive_enabled`` is off). At shutdown a pass in progress is cut short: what it read
    stays pending and is taken over later, and storing it again is harmless."""
    if not settings.archive_enabled:
        return inner

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):  # the archiver stops before inner's closers run
            redis = aioredis.Redis.from_url(
                settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S
            )
            archiver = TrajectoryArchiver.from_settings(redis, database, settings)
            stop = asyncio.Event()
            task = asyncio.create_task(archiver.run(stop), name="trajectory archiver")
            try:
                yield
            finally:
                # The event ends the loop even if redis-py swallows the cancel mid-command.
                stop.set()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await redis.aclose()

    return lifespan
