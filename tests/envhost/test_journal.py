"""The write-behind journal: batches in order, keeps writes while the database is down, and
drops only writes the database refuses for good."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from envhost_support import register, weather_spec

from astra_common.db import Database, NotFoundError, Repositories
from astra_common.db.migrate import upgrade_async
from astra_envhost.journal import CallRecorded, EpisodeCreated, EpisodeJournal
from astra_proto import Episode, EpisodeState, ToolCallRecord


def episode(episode_id: str, env_id: str) -> Episode:
    now = datetime.now(UTC)
    return Episode(
        id=episode_id, env_id=env_id, mcp_url="http://x/mcp", tools=[],
        created_at=now, last_active_at=now,
    )  # fmt: skip


async def test_refused_writes_are_dropped_and_the_rest_applied(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with Database(database_url) as database:
        journal = EpisodeJournal(database)

        async def create(repos: Repositories) -> None:
            await repos.episodes.create(episode("ep_1", spec.id))

        async def refused(repos: Repositories) -> None:
            await repos.episodes.create(episode("ep_2", "env_not_registered"))

        async def close(repos: Repositories) -> None:
            await repos.episodes.set_state("ep_1", EpisodeState.CLOSED)

        for operation in (create, refused, close):
            journal.add(operation)
        with caplog.at_level(logging.ERROR):
            await journal.flush()
        assert journal.pending == []
        assert "dropped a write" in caplog.text
        async with database.transaction() as repos:
            assert (await repos.episodes.get("ep_1")).state == EpisodeState.CLOSED
            with pytest.raises(NotFoundError):
                await repos.episodes.get("ep_2")


async def test_writes_are_kept_while_the_database_is_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet" / "astra.db"
    url = f"sqlite+aiosqlite:///{missing}"
    async with Database(url) as database:
        journal = EpisodeJournal(database)
        spec = weather_spec()

        async def create(repos: Repositories) -> None:
            await repos.environments.register(spec)

        journal.add(create)
        with pytest.raises(Exception, match="no such table"):
            await journal.flush()  # the schema is not there yet: an operational failure
        assert len(journal.pending) == 1
        await upgrade_async(url)
        await journal.flush()
        assert journal.pending == []
        async with database.transaction() as repos:
            assert await repos.environments.exists(spec.id)


def call(seq: int) -> ToolCallRecord:
    return ToolCallRecord(
        seq=seq, tool_name="get_city_id", arguments={"name": "Paris"},
        result={"city_id": "c-75"}, latency_ms=1.0, at=datetime.now(UTC),
    )  # fmt: skip


async def test_bulk_runs_keep_the_queue_order(database_url: str) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with Database(database_url) as database:
        journal = EpisodeJournal(database)

        async def advance(repos: Repositories) -> None:
            await repos.episodes.set_turn("ep_1", 1)

        async def close(repos: Repositories) -> None:
            await repos.episodes.set_state("ep_1", EpisodeState.CLOSED)

        journal.add(EpisodeCreated(episode("ep_1", spec.id), "http://replica-1"))
        journal.add(CallRecorded("ep_1", call(0)))
        journal.add(EpisodeCreated(episode("ep_2", spec.id), None))
        journal.add(CallRecorded("ep_2", call(0)))
        journal.add(CallRecorded("ep_1", call(1)))
        journal.add(advance)  # ends a bulk run: later calls go in a second multi-row insert
        journal.add(CallRecorded("ep_1", call(2)))
        journal.add(close)
        await journal.flush()
        assert journal.pending == []
        async with database.transaction() as repos:
            first = await repos.episodes.get("ep_1")
            second = await repos.episodes.get("ep_2")
            assert await repos.episodes.owner_url("ep_1") == "http://replica-1"
    assert [c.seq for c in first.calls] == [0, 1, 2]
    assert first.calls[0] == call(0).model_copy(update={"at": first.calls[0].at})
    assert (first.turn, first.state) == (1, EpisodeState.CLOSED)
    assert first.last_active_at == first.calls[2].at
    assert [c.seq for c in second.calls] == [0]


async def test_a_refused_bulk_write_drops_only_itself(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with Database(database_url) as database:
        journal = EpisodeJournal(database)
        journal.add(EpisodeCreated(episode("ep_1", spec.id), None))
        journal.add(EpisodeCreated(episode("ep_2", "env_not_registered"), None))
        journal.add(CallRecorded("ep_1", call(0)))
        journal.add(CallRecorded("ep_2", call(0)))  # its episode was refused: refused too
        journal.add(CallRecorded("ep_1", call(0)))  # position taken: refused
        journal.add(CallRecorded("ep_1", call(1)))
        with caplog.at_level(logging.ERROR):
            await journal.flush()
        assert journal.pending == []
        assert caplog.text.count("dropped a write") == 3
        async with database.transaction() as repos:
            kept = await repos.episodes.get("ep_1")
            with pytest.raises(NotFoundError):
                await repos.episodes.get("ep_2")
    assert [c.seq for c in kept.calls] == [0, 1]


async def test_a_large_run_split_into_statements_writes_every_row_in_order(
    database_url: str,
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with Database(database_url) as database:
        # Small parts, so 7 creations and 21 calls take two statements of each kind.
        journal = EpisodeJournal(database, rows_per_statement=3, statements_per_run=2)
        ids = [f"ep_split_{i}" for i in range(7)]
        for episode_id in ids:
            journal.add(EpisodeCreated(episode(episode_id, spec.id), None))
        for seq in range(3):
            for episode_id in ids:
                journal.add(CallRecorded(episode_id, call(seq)))
        assert [len(part) for part in journal._statements(list(range(21)))] == [11, 10]
        await journal.flush()
        assert journal.pending == []
        async with database.transaction() as repos:
            episodes = [await repos.episodes.get(episode_id) for episode_id in ids]
    for stored in episodes:
        assert [c.seq for c in stored.calls] == [0, 1, 2]
        assert stored.last_active_at == stored.calls[2].at
