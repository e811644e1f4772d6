"""The trajectory archiver on a real Redis stream and a real database (SQLite and PostgreSQL):
trajectories published with the real publisher are stored once, also when an archiver dies
between storing and acknowledging, and expired ones are pruned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from synth_support import (
    finished_trajectory,
    private_redis,
    publish_as_rollout,
    rollout_envelope,
)

from astra.redis_server import RedisServer
from astra_common.db import Database
from astra_common.db.migrate import upgrade_async
from astra_common.db.models import TrajectoryRow
from astra_common.streams import dead_letter_stream
from astra_proto import (
    TRAJECTORY_STREAM,
    Message,
    StreamEnvelope,
    Trajectory,
)
from astra_synth.archive import ARCHIVE_GROUP, MAX_DELIVERIES, TrajectoryArchiver

WAIT_S = 60.0


async def publish(redis: aioredis.Redis, trajectories: list[Trajectory]) -> None:
    """Publish through the real publisher, as rollout does; none is a repeat."""
    results = await publish_as_rollout(redis, trajectories)
    assert not any(result.duplicate for result in results)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database: a new SQLite file, or the run's PostgreSQL database wiped clean."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    else:
        url = await wiped(request.getfixturevalue("postgres_database"))
    await upgrade_async(url)
    async with Database(url) as db:
        yield db


@pytest.fixture
async def postgres(postgres_database: str) -> AsyncIterator[Database]:
    """The run's PostgreSQL database, wiped clean and migrated."""
    url = await wiped(postgres_database)
    await upgrade_async(url)
    async with Database(url) as db:
        yield db


async def wiped(postgres_url: str) -> str:
    """``postgres_url`` after dropping everything in it."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as connection:
        await connection.execute("DROP SCHEMA public CASCADE")
        await connection.execute("CREATE SCHEMA public")
    return postgres_url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of a Redis database of this test's own (``private_redis`` empties it)."""
    client = aioredis.Redis.from_url(private_redis(redis_url), socket_timeout=30)
    try:
        yield client
    finally:
        await client.aclose()


def archiver(
    redis: aioredis.Redis, database: Database, name: str, *, reclaim_idle_s: float = 60.0
) -> TrajectoryArchiver:
    return TrajectoryArchiver(
        redis,
        database,
        consumer_name=name,
        retention=timedelta(days=30),
        reclaim_idle=timedelta(seconds=reclaim_idle_s),
        batch_size=4,
        block_ms=100,
        give_up_after_s=30,
    )


async def archived_rows(database: Database) -> list[tuple[str, str | None]]:
    """(trajectory id, stream entry id) of every archived row, by id."""
    async with database.transaction() as repos:
        rows = await repos.session.execute(
            select(TrajectoryRow.id, TrajectoryRow.stream_entry_id).order_by(TrajectoryRow.id)
        )
        return [(row.id, row.stream_entry_id) for row in rows]


async def wait_for_rows(database: Database, count: int, task: asyncio.Task[None]) -> None:
    """Poll until ``count`` trajectories are archived by the running ``task``."""
    async with asyncio.timeout(WAIT_S):
        while True:
            assert not task.done(), task
            if len(await archived_rows(database)) >= count:
                return
            await asyncio.sleep(0.05)


async def pending(redis: aioredis.Redis) -> int:
    summary = await redis.xpending(TRAJECTORY_STREAM, ARCHIVE_GROUP)
    return int(summary["pending"])


async def test_published_trajectories_are_archived_once_and_acknowledged(
    redis: aioredis.Redis, database: Database
) -> None:
    trajectories = [finished_trajectory(n) for n in range(10)]
    await publish(redis, trajectories)
    # A copy of one record reaching the stream again (a producer retry past its dedupe).
    await redis.xadd(
        TRAJECTORY_STREAM, {"data": rollout_envelope(trajectories[3]).model_dump_json()}
    )
    worker = archiver(redis, database, "archiver-a")

    stored = 0
    async with asyncio.timeout(WAIT_S):
        while stored < len(trajectories) or await pending(redis):
            stored += await worker.archive_pass()

    assert stored == len(trajectories)
    rows = await archived_rows(database)
    assert sorted(row_id for row_id, _ in rows) == sorted(t.id for t in trajectories)
    stream: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(TRAJECTORY_STREAM)  # type: ignore[assignment]
    entries = {entry_id.decode() for entry_id, _ in stream}
    assert all(entry_id in entries for _, entry_id in rows)
    async with database.transaction() as repos:
        assert await repos.trajectories.get("traj-7") == trajectories[7]
    assert await pending(redis) == 0
    assert await worker.archive_pass() == 0  # nothing new: the stream is drained


async def test_a_crash_between_write_and_ack_is_taken_over_without_duplicates(
    redis: aioredis.Redis, database: Database
) -> None:
    trajectories = [finished_trajectory(n) for n in range(3)]
    await publish(redis, trajectories)
    dead = archiver(redis, database, "archiver-dead")
    await dead.consumer.ensure_group()
    deliveries = await dead.consumer.read(count=10)
    assert len(deliveries) == 3
    stored, new = await dead.store(deliveries)
    assert (len(stored), new) == (3, 3)
    # The archiver dies here: written, never acknowledged.
    assert await pending(redis) == 3

    survivor = archiver(redis, database, "archiver-survivor", reclaim_idle_s=0)
    async with asyncio.timeout(WAIT_S):
        while await pending(redis):
            assert await survivor.archive_pass() == 0  # stored already: nothing new

    rows = await archived_rows(database)
    assert [row_id for row_id, _ in rows] == ["traj-0", "traj-1", "traj-2"]
    consumers = await redis.xinfo_consumers(TRAJECTORY_STREAM, ARCHIVE_GROUP)
    assert {c["name"].decode(): c["pending"] for c in consumers} == {
        "archiver-dead": 0,
        "archiver-survivor": 0,
    }


async def test_prune_deletes_only_trajectories_past_the_retention(
    redis: aioredis.Redis, database: Database
) -> None:
    await publish(redis, [finished_trajectory(n) for n in range(3)])
    worker = archiver(redis, database, "archiver-a")
    stored = 0
    async with asyncio.timeout(WAIT_S):
        while stored < 3:
            stored += await worker.archive_pass()
    async with database.transaction() as repos:
        await repos.session.execute(
            update(TrajectoryRow)
            .where(TrajectoryRow.id.in_(["traj-0", "traj-2"]))
            .values(created_at=datetime.now(UTC) - timedelta(days=31))
        )

    assert await worker.prune() == 2

    assert [row_id for row_id, _ in await archived_rows(database)] == ["traj-1"]
    assert await worker.prune() == 0
    async with database.transaction() as repos:
        assert await repos.session.scalar(select(func.count()).select_from(TrajectoryRow)) == 1


async def test_the_archiver_recreates_its_group_when_the_stream_is_deleted(
    redis: aioredis.Redis, database: Database
) -> None:
    worker = archiver(redis, database, "archiver-a")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await publish(redis, [finished_trajectory(0)])
        await wait_for_rows(database, 1, task)
        await redis.delete(TRAJECTORY_STREAM)  # e.g. an operator resets the stream
        await publish(redis, [finished_trajectory(1)])
        await wait_for_rows(database, 2, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def test_a_pass_rides_out_a_redis_restart(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(directory=tmp_path / "redis", persist=True).start()
    client = aioredis.Redis.from_url(server.url, socket_timeout=30)
    try:
        await publish(client, [finished_trajectory(n) for n in range(3)])
        worker = archiver(client, database, "archiver-a")
        await asyncio.to_thread(server.stop)
        archiving = asyncio.create_task(worker.archive_pass())
        async with asyncio.timeout(WAIT_S):  # until the archiver has retried at least once
            while not any(r.name == "astra.retry" for r in caplog.records):
                assert not archiving.done(), archiving
                await asyncio.sleep(0.05)
        await asyncio.to_thread(server.start)

        async with asyncio.timeout(WAIT_S):
            assert await archiving == 3
        assert [row_id for row_id, _ in await archived_rows(database)] == [
            "traj-0",
            "traj-1",
            "traj-2",
        ]
        assert await pending(client) == 0
    finally:
        await client.aclose()
        await asyncio.to_thread(server.stop)


@pytest.mark.postgres
async def test_an_entry_the_database_refuses_is_dead_lettered_and_the_rest_archived(
    redis: aioredis.Redis, postgres: Database
) -> None:
    poison = finished_trajectory(1).model_copy(
        update={"messages": [Message(role="user", content="nul \x00 byte")]}
    )
    await publish(redis, [finished_trajectory(0), poison, finished_trajectory(2)])
    worker = archiver(redis, postgres, "archiver-a", reclaim_idle_s=0)

    stored = 0
    async with asyncio.timeout(WAIT_S):  # PostgreSQL's JSONB refuses the NUL character
        while stored < 2 or await pending(redis):
            stored += await worker.archive_pass()

    assert [row_id for row_id, _ in await archived_rows(postgres)] == ["traj-0", "traj-2"]
    dead: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        dead_letter_stream(TRAJECTORY_STREAM)
    )
    assert len(dead) == 1
    fields = dead[0][1]
    assert StreamEnvelope[Trajectory].model_validate_json(fields[b"data"]).record_id == "traj-1"
    assert fields[b"source_group"] == ARCHIVE_GROUP.encode()
    assert (
        fields[b"reason"]
        == f"delivered {MAX_DELIVERIES + 1} times, more than {MAX_DELIVERIES}".encode()
    )


async def test_stopped_archivers_without_pending_entries_leave_the_group(
    redis: aioredis.Redis, database: Database
) -> None:
    await publish(redis, [finished_trajectory(n) for n in range(3)])
    finished = archiver(redis, database, "archiver-finished")
    await finished.consumer.ensure_group()
    await finished.process(await finished.consumer.read(count=1))
    crashed = archiver(redis, database, "archiver-crashed")
    assert len(await crashed.consumer.read(count=1)) == 1  # then dies holding it
    current = archiver(redis, database, "archiver-current")
    await current.process(await current.consumer.read(count=1))  # nothing pending either

    assert await current.forget_stopped_consumers(idle=timedelta(0)) == ["archiver-finished"]

    consumers = await redis.xinfo_consumers(TRAJECTORY_STREAM, ARCHIVE_GROUP)
    assert {c["name"].decode(): c["pending"] for c in consumers} == {
        "archiver-crashed": 1,
        "archiver-current": 0,
    }
