"""The persistence layer on real databases: every repository test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.engine import make_url

from astra_common.db import (
    ConflictError,
    Database,
    DatabaseError,
    EnvironmentFilter,
    ImmutableError,
    NotFoundError,
    create_engine,
)
from astra_common.db.engine import async_database_url, display_url
from astra_common.db.migrate import (
    MIGRATIONS_DIR,
    current_async,
    head,
    make_revision_async,
    upgrade_async,
)
from astra_common.db.models import Base, EpisodeCallRow
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeState,
    FinishReason,
    JobKind,
    JobRejection,
    JobState,
    Message,
    Provenance,
    ReferenceCall,
    RewardBreakdown,
    ScenarioType,
    StageProgress,
    SubQuestion,
    SynthesisJob,
    SyntheticTool,
    Timings,
    ToolCallRecord,
    ToolSpec,
    Trajectory,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TABLES = {
    "synthesis_jobs",
    "environments",
    "episodes",
    "episode_calls",
    "trajectories",
    "job_environments",
    "job_rejections",
}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


# --- valid contract objects ------------------------------------------------------------------


def make_spec(
    task: str = "What is the capital of France?",
    *,
    hops: int = 1,
    domain: str = "geography",
    split: str = "train",
    source: str | None = "procedural",
    job_id: str | None = None,
    scenario_type: ScenarioType | None = ScenarioType.SINGLE_HOP,
) -> EnvironmentSpec:
    """A synthetic environment whose sub-questions form a chain of ``hops`` tool calls."""
    tools, questions = [], []
    for hop in range(hops):
        name = f"lookup_{hop}"
        tools.append(
            SyntheticTool(
                spec=ToolSpec(
                    name=name,
                    description="Look up one fact.",
                    parameters={
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    },
                ),
                code="def lookup(query):\n    return {'answer': 'Paris'}\n",
                entrypoint="lookup",
                reference_calls=[
                    ReferenceCall(
                        tool_name=name,
                        arguments={"query": task},
                        sub_question_id=f"q{hop}",
                        expected_answer="Paris",
                    )
                ],
            )
        )
        questions.append(
            SubQuestion(
                id=f"q{hop}",
                question=f"Step {hop} of: {task}",
                answer="Paris",
                depends_on=[f"q{hop - 1}"] if hop else [],
                tool_name=name,
            )
        )
    provenance = None if source is None else Provenance(source=source, job_id=job_id, seed=7)
    return EnvironmentSpec(
        task=task,
        answer="Paris",
        domain=domain,
        split=split,
        scenario_type=scenario_type,
        sub_questions=questions,
        tools=tools,
        provenance=provenance,
    )


def make_job(job_id: str = "job-1", *, created_at: datetime = T0) -> SynthesisJob:
    return SynthesisJob(
        id=job_id,
        kind=JobKind.ENVIRONMENTS,
        params={"source": "procedural", "count": 3},
        created_at=created_at,
        updated_at=created_at,
    )


def make_episode(spec: EnvironmentSpec, episode_id: str = "ep-1") -> Episode:
    return Episode(
        id=episode_id,
        env_id=spec.id,
        seed=3,
        mcp_url=f"http://envhost-0/episodes/{episode_id}/mcp",
        tools=spec.tool_specs(),
        created_at=T0,
        last_active_at=T0,
    )


def make_trajectory(
    trajectory_id: str = "traj-1",
    *,
    env_id: str = "env_x",
    group_id: str | None = "group-1",
    policy_version: int = 0,
    answer: str = "Paris",
) -> Trajectory:
    return Trajectory(
        id=trajectory_id,
        env_id=env_id,
        episode_id="ep-1",
        group_id=group_id,
        policy_version=policy_version,
        messages=[
            Message(role="user", content="What is the capital of France?"),
            Message(role="assistant", content=answer),
        ],
        tools=[ToolSpec(name="lookup_0", description="Look up one fact.")],
        reward=RewardBreakdown.compute(1, ["q0"], 1),
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=T0, finished_at=T0 + timedelta(seconds=2)),
    )


# --- databases ---------------------------------------------------------------------------------


async def _reset_postgres(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute("DROP SCHEMA public CASCADE")
        await connection.execute("CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the run's PostgreSQL database wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'astra.db'}"
    url: str = request.getfixturevalue("postgres_database")
    await _reset_postgres(url)
    return url


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A database migrated to head."""
    await upgrade_async(empty_database_url)
    return empty_database_url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url) as database:
        yield database


async def _run_on(url: str, inspect_sync: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(inspect_sync)
    finally:
        await engine.dispose()


# --- engine and migrations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///a/b.db", "sqlite+aiosqlite:///a/b.db"),
        ("sqlite+pysqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_urls_get_an_async_driver(given: str, expected: str) -> None:
    assert async_database_url(given) == make_url(expected)


@pytest.mark.parametrize("url", ["mysql://u@h/d", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(DatabaseError):
        async_database_url(url)


def test_display_url_masks_the_password() -> None:
    assert "secret" not in display_url("postgresql://u:secret@h/d")


async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "astra.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("foreign_keys", "journal_mode", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert path.parent.is_dir()
    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 30_000}


async def test_upgrade_from_empty_to_head(empty_database_url: str) -> None:
    assert await current_async(empty_database_url) is None
    await upgrade_async(empty_database_url)
    assert await current_async(empty_database_url) == head() == "0004"
    await upgrade_async(empty_database_url)  # already at head: nothing to do
    tables = await _run_on(empty_database_url, lambda c: set(inspect(c).get_table_names()))
    assert tables >= TABLES | {"alembic_version"}


@pytest.mark.parametrize("empty_database_url", [BACKENDS[1]], indirect=True)
async def test_concurrent_upgrades_on_postgres_wait_for_each_other(empty_database_url: str) -> None:
    await asyncio.wait_for(
        asyncio.gather(*(upgrade_async(empty_database_url) for _ in range(3))), timeout=60
    )
    assert await current_async(empty_database_url) == head()


async def test_migrations_match_the_models(database_url: str) -> None:
    """Fails when a model changed without a migration (or a migration drifted from the models)."""

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    assert await _run_on(database_url, differences) == []


async def test_make_revision_writes_an_empty_revision_when_nothing_changed(
    database_url: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    path = await make_revision_async(database_url, "nothing new", migrations_dir=migrations)
    assert path.name == "0005_nothing_new.py"
    source = path.read_text()
    compile(source, str(path), "exec")
    assert 'down_revision: str | Sequence[str] | None = "0004"' in source.replace("'", '"')
    assert "op." not in source


# --- jobs --------------------------------------------------------------------------------------


async def test_job_round_trip_keeps_timestamps_aware(db: Database) -> None:
    naive = datetime(2026, 3, 1, 12, 0, 0)
    plus_two = datetime(2026, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    async with db.transaction() as repos:
        created = await repos.jobs.create(make_job("a", created_at=naive))
        other = await repos.jobs.create(make_job("b", created_at=plus_two))
    assert created == make_job("a", created_at=naive.replace(tzinfo=UTC))
    assert created.created_at.tzinfo is not None
    assert other.created_at == plus_two
    assert other.created_at.utcoffset() == timedelta(0)
    async with db.transaction() as repos:
        assert await repos.jobs.get("a") == created


async def test_job_lifecycle_refuses_changes_once_terminal(db: Database) -> None:
    async with db.transaction() as repos:
        await repos.jobs.create(make_job())
    progress = [StageProgress(stage="decompose", done=2, total=3, rejected={"cycle": 1})]
    assert (await _get_job(db, "job-1")).result == {}
    stats = {"registered": 2, "hops": {"2": 1, "3": 1}}
    async with db.transaction() as repos:
        running = await repos.jobs.update(
            "job-1", state=JobState.RUNNING, progress=progress, result=stats
        )
    assert running.state == JobState.RUNNING
    assert running.progress == progress
    assert running.result == stats
    assert running.updated_at > T0
    assert running.finished_at is None

    async with db.transaction() as repos:
        done = await repos.jobs.update("job-1", state=JobState.SUCCEEDED)
    assert done.finished_at is not None
    assert done.progress == progress  # not given, so kept

    for change in ({"state": JobState.CANCELLED}, {"state": JobState.RUNNING}, {"error": "x"}):
        with pytest.raises(ImmutableError, match="succeeded"):
            async with db.transaction() as repos:
                await repos.jobs.update("job-1", **change)
    async with db.transaction() as repos:
        assert await repos.jobs.get("job-1") == done


async def _get_job(db: Database, job_id: str) -> SynthesisJob:
    async with db.transaction() as repos:
        return await repos.jobs.get(job_id)


async def test_job_errors(db: Database) -> None:
    async with db.transaction() as repos:
        await repos.jobs.create(make_job())
        with pytest.raises(ConflictError):
            await repos.jobs.create(make_job())
        # ON CONFLICT kept the transaction usable (PostgreSQL aborts it on a failed statement).
        failed = await repos.jobs.update("job-1", state=JobState.FAILED, error="LLM down")
        with pytest.raises(NotFoundError):
            await repos.jobs.get("missing")
        with pytest.raises(NotFoundError):
            await repos.jobs.update("missing", state=JobState.RUNNING)
    assert failed.error == "LLM down"
    assert failed.state.terminal


async def test_job_leases_fence_out_superseded_runs(db: Database) -> None:
    async with db.transaction() as repos:
        await repos.jobs.create(make_job(), task_name="astra.synth.environment_job")
        first = await repos.jobs.claim("job-1", lease_s=60)
        assert first is not None
        assert (first.state, first.attempts) == (JobState.RUNNING, 1)
        assert first.heartbeat_at is not None
        # A live lease: a second delivery of the job may not claim it, nor settle it.
        assert await repos.jobs.claim("job-1", lease_s=60) is None
        assert await repos.jobs.stale(lease_s=60) == []
        assert not await repos.jobs.release("job-1", attempt=1, lease_s=60)
        assert await repos.jobs.heartbeat("job-1", attempt=1)

    # Lease run out (a lease of 0 s is over at once): the job is stale, and released.
    async with db.transaction() as repos:
        [stale] = await repos.jobs.stale(lease_s=0)
        assert (stale.job.id, stale.task_name) == ("job-1", "astra.synth.environment_job")
        assert await repos.jobs.release("job-1", attempt=1, lease_s=0)
        assert (await repos.jobs.get("job-1")).state == JobState.PENDING
        second = await repos.jobs.claim("job-1", lease_s=60)
    assert second is not None
    assert second.attempts == 2

    # The first run comes back: its heartbeat and its writes are refused.
    async with db.transaction() as repos:
        assert not await repos.jobs.heartbeat("job-1", attempt=1)
        with pytest.raises(ImmutableError, match="taken over"):
            await repos.jobs.update("job-1", state=JobState.SUCCEEDED, attempt=1)
        done = await repos.jobs.update("job-1", state=JobState.SUCCEEDED, attempt=2)
    assert done.state == JobState.SUCCEEDED
    async with db.transaction() as repos:
        assert await repos.jobs.claim("job-1", lease_s=0) is None  # finished: never again
        assert not await repos.jobs.release("job-1", attempt=2, lease_s=0, failure="x")


async def test_a_stale_job_can_be_failed_with_the_reason(db: Database) -> None:
    async with db.transaction() as repos:
        await repos.jobs.create(make_job())
        await repos.jobs.claim("job-1", lease_s=60)
        assert await repos.jobs.release("job-1", attempt=1, lease_s=0, failure="worker lost")
        failed = await repos.jobs.get("job-1")
    assert (failed.state, failed.error) == (JobState.FAILED, "worker lost")
    assert failed.finished_at is not None


async def test_job_rejections_page_and_filter(db: Database) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    records = [
        JobRejection(stage="decomposed", reason="no_json", item=f"q{i}", excerpt="Sure!", at=at)
        for i in range(3)
    ] + [JobRejection(stage="tools_verified", reason="replay_failed", message="boom", at=at)]
    async with db.transaction() as repos:
        await repos.jobs.create(make_job())
        await repos.jobs.add_rejections("job-1", records)
        total, page = await repos.jobs.rejections("job-1", limit=2, offset=1)
        assert total == 4
        assert [r.item for r in page] == ["q1", "q2"]
        total, page = await repos.jobs.rejections("job-1", reason="replay_failed")
        assert (total, page) == (1, records[3:])
        assert (await repos.jobs.rejections("job-1", stage="merged"))[0] == 0
        await repos.jobs.clear_rejections("job-1")
        assert await repos.jobs.rejections("job-1") == (0, [])


async def test_job_list_filters_and_pages_newest_first(db: Database) -> None:
    async with db.transaction() as repos:
        for index in range(5):
            await repos.jobs.create(make_job(f"job-{index}", created_at=T0 + timedelta(index)))
        await repos.jobs.update("job-1", state=JobState.RUNNING)
        await repos.jobs.update("job-3", state=JobState.CANCELLED)

    async with db.transaction() as repos:
        everything = [job.id for job in await repos.jobs.list()]
        pending = [job.id for job in await repos.jobs.list(state=JobState.PENDING)]
        active = await repos.jobs.list(state=[JobState.PENDING, JobState.RUNNING])
        page = [job.id for job in await repos.jobs.list(limit=2, offset=1)]
        none = await repos.jobs.list(kind=JobKind.TRAJECTORIES)
    assert everything == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert pending == ["job-4", "job-2", "job-0"]
    assert [job.id for job in active] == ["job-4", "job-2", "job-1", "job-0"]
    assert page == ["job-3", "job-2"]
    assert none == []


# --- environments ------------------------------------------------------------------------------


async def test_environment_register_is_idempotent(db: Database) -> None:
    first = make_spec(job_id="job-1")
    again = make_spec(source="another-source")  # provenance is not hashed: same id
    assert again.id == first.id
    async with db.transaction() as repos:
        registered = await repos.environments.register(first)
    async with db.transaction() as repos:
        repeated = await repos.environments.register(again)
        assert await repos.environments.count() == 1
    assert registered.created
    assert registered.spec == first
    assert not repeated.created
    assert repeated.spec == first  # the first registration wins
    async with db.transaction() as repos:
        assert await repos.environments.get(first.id) == first
        assert await repos.environments.exists(first.id)
        assert not await repos.environments.exists("env_missing")
        with pytest.raises(NotFoundError):
            await repos.environments.get("env_missing")


async def test_environment_whose_id_does_not_match_its_content_is_refused(db: Database) -> None:
    tampered = make_spec()
    tampered.task = "Something else entirely"  # no validate_assignment: the id is now stale
    forged = EnvironmentSpec.model_construct(**{**make_spec().__dict__, "id": "env_" + "0" * 32})
    async with db.transaction() as repos:
        for spec in (tampered, forged):
            with pytest.raises(ImmutableError, match="does not match its content"):
                await repos.environments.register(spec)
        assert await repos.environments.count() == 0


async def test_environment_filters(db: Database) -> None:
    specs = {
        "a": make_spec("a", hops=1, domain="geo", split="train", source="procedural"),
        "b": make_spec(
            "b",
            hops=2,
            domain="geo",
            split="test",
            job_id="job-9",
            scenario_type=ScenarioType.MULTI_HOP,
        ),
        "c": make_spec(
            "c",
            hops=3,
            domain="math",
            source="qa",
            job_id="job-9",
            scenario_type=ScenarioType.MULTI_HOP,
        ),
        "d": make_spec("d", hops=1, domain="math", source=None, scenario_type=None),
    }
    async with db.transaction() as repos:
        for spec in specs.values():
            await repos.environments.register(spec)

    async def tasks(**where: Any) -> list[str]:
        found = await repos.environments.list(EnvironmentFilter(**where))
        assert await repos.environments.count(EnvironmentFilter(**where)) == len(found)
        return sorted(spec.task for spec in found)

    async with db.transaction() as repos:
        assert await tasks() == ["a", "b", "c", "d"]
        assert await tasks(domain="geo") == ["a", "b"]
        assert await tasks(source="procedural") == ["a", "b"]
        assert await tasks(source="qa") == ["c"]
        assert await tasks(split="test") == ["b"]
        assert await tasks(job_id="job-9") == ["b", "c"]
        assert await tasks(scenario_type=ScenarioType.MULTI_HOP) == ["b", "c"]
        assert await tasks(kind="synthetic") == ["a", "b", "c", "d"]
        assert await tasks(kind="builtin") == []
        assert await tasks(min_hops=2) == ["b", "c"]
        assert await tasks(max_hops=2) == ["a", "b", "d"]
        assert await tasks(min_hops=2, max_hops=2, domain="geo") == ["b"]
        assert await tasks(domain="math", source="qa", split="train") == ["c"]
        # A later job that produced "a" and "c" again: its filter finds both, "c" too although
        # its provenance names job-9; linking twice is a no-op.
        for env in ("a", "c", "c"):
            await repos.environments.link_job("job-10", specs[env].id)
        assert await tasks(job_id="job-10") == ["a", "c"]
        assert await tasks(job_id="job-10", domain="math") == ["c"]
        assert await tasks(job_id="job-9") == ["b", "c"]
        pages = [
            [spec.id for spec in await repos.environments.list(limit=2, offset=offset)]
            for offset in (0, 2, 4)
        ]
    assert [len(page) for page in pages] == [2, 2, 0]
    assert sorted(pages[0] + pages[1]) == sorted(spec.id for spec in specs.values())


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    async def register_then_fail() -> None:
        async with db.transaction() as repos:
            await repos.environments.register(make_spec())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await register_then_fail()
    async with db.transaction() as repos:
        assert await repos.environments.count() == 0


# --- episodes ----------------------------------------------------------------------------------


async def test_episode_needs_a_registered_environment(db: Database) -> None:
    async with db.transaction() as repos:
        with pytest.raises(NotFoundError, match="environment"):
            await repos.episodes.create(make_episode(make_spec()))


async def test_episode_call_log_keeps_order(db: Database) -> None:
    spec = make_spec()
    async with db.transaction() as repos:
        await repos.environments.register(spec)
        created = await repos.episodes.create(make_episode(spec), owner_url="http://envhost-0")
        with pytest.raises(ConflictError):
            await repos.episodes.create(make_episode(spec))
    assert created == make_episode(spec)

    async with db.transaction() as repos:
        first = await repos.episodes.append_call(
            "ep-1",
            "lookup_0",
            arguments={"query": "France"},
            result={"answer": "Paris"},
            latency_ms=12.5,
            at=T0,
        )
        await repos.episodes.append_call(
            "ep-1", "weather", error="unknown tool", latency_ms=0.1, distractor=True, at=T0
        )
    async with db.transaction() as repos:
        await repos.episodes.append_call("ep-1", "lookup_0", result=["a", 1, None], latency_ms=3)
        with pytest.raises(NotFoundError):
            await repos.episodes.append_call("ep-missing", "lookup_0", latency_ms=1)
        episode = await repos.episodes.get("ep-1")
        assert await repos.episodes.owner_url("ep-1") == "http://envhost-0"

    assert first.seq == 0
    assert [call.seq for call in episode.calls] == [0, 1, 2]
    assert episode.calls[0] == first
    assert [call.tool_name for call in episode.calls] == ["lookup_0", "weather", "lookup_0"]
    assert episode.calls[1].error == "unknown tool"
    assert episode.calls[1].distractor
    assert episode.calls[2].result == ["a", 1, None]
    assert episode.last_active_at > T0  # appending touches the episode
    assert episode.tools == spec.tool_specs()


async def test_concurrent_appends_get_distinct_positions(db: Database) -> None:
    spec = make_spec()
    async with db.transaction() as repos:
        await repos.environments.register(spec)
        await repos.episodes.create(make_episode(spec))

    async def append(index: int) -> int:
        async with db.transaction() as repos:
            call = await repos.episodes.append_call(
                "ep-1", "lookup_0", arguments={"i": index}, latency_ms=1
            )
            return call.seq

    seqs = await asyncio.wait_for(asyncio.gather(*(append(i) for i in range(8))), timeout=60)
    assert sorted(seqs) == list(range(8))
    async with db.transaction() as repos:
        episode = await repos.episodes.get("ep-1")
    assert [call.seq for call in episode.calls] == list(range(8))


async def test_episode_state_reward_idleness_and_delete(db: Database) -> None:
    spec = make_spec()
    reward = RewardBreakdown.compute(1, ["q0"], 2, final_answer_correct=True)
    async with db.transaction() as repos:
        await repos.environments.register(spec)
        for index, owner in enumerate(["http://a", "http://a", "http://b"]):
            await repos.episodes.create(make_episode(spec, f"ep-{index}"), owner_url=owner)
        await repos.episodes.append_call("ep-0", "lookup_0", latency_ms=1)
        await repos.episodes.touch("ep-0", at=T0 + timedelta(minutes=30))
        await repos.episodes.touch("ep-1", at=T0 + timedelta(minutes=5))
        await repos.episodes.set_reward("ep-1", reward)
        await repos.episodes.set_state("ep-1", EpisodeState.SCORED)

    cutoff = T0 + timedelta(minutes=10)
    async with db.transaction() as repos:
        scored = await repos.episodes.get("ep-1")
        assert await repos.episodes.list_idle(cutoff) == ["ep-2", "ep-1"]
        assert await repos.episodes.list_idle(cutoff, owner_url="http://a") == ["ep-1"]
        assert await repos.episodes.list_idle(cutoff, states=[EpisodeState.OPEN]) == ["ep-2"]
        assert await repos.episodes.list_idle(cutoff, limit=1) == ["ep-2"]
        assert await repos.episodes.list_idle(T0 + timedelta(hours=1)) == ["ep-2", "ep-1", "ep-0"]
        await repos.episodes.set_reward("ep-1", None)
        assert (await repos.episodes.get("ep-1")).reward is None
        with pytest.raises(NotFoundError):
            await repos.episodes.set_state("ep-missing", EpisodeState.CLOSED)
    assert scored.state == EpisodeState.SCORED
    assert scored.reward == reward
    assert scored.last_active_at == T0 + timedelta(minutes=5)

    async with db.transaction() as repos:
        assert await repos.episodes.delete("ep-0")
        assert not await repos.episodes.delete("ep-0")
        with pytest.raises(NotFoundError):
            await repos.episodes.get("ep-0")
        calls_left = await repos.session.scalar(
            select(func.count())
            .select_from(EpisodeCallRow)
            .where(EpisodeCallRow.episode_id == "ep-0")
        )
    assert calls_left == 0  # ON DELETE CASCADE (SQLite: foreign keys are switched on)


async def test_bulk_episode_and_call_writes(db: Database) -> None:
    spec = make_spec()
    first, second = make_episode(spec, "ep-a"), make_episode(spec, "ep-b")

    def call(seq: int, minutes: int) -> ToolCallRecord:
        return ToolCallRecord(
            seq=seq,
            tool_name="lookup_0",
            arguments={"query": str(seq)},
            result={"answer": "Paris"},
            latency_ms=1.5,
            at=T0 + timedelta(minutes=minutes),
        )

    async with db.transaction() as repos:
        await repos.environments.register(spec)
        await repos.episodes.create_many([(first, "http://a"), (second, None)])
        await repos.episodes.record_calls_of_episodes(
            [("ep-a", call(0, 1)), ("ep-b", call(0, 2)), ("ep-a", call(1, 7)), ("ep-a", call(2, 3))]
        )
    async with db.transaction() as repos:
        stored_a = await repos.episodes.get("ep-a")
        stored_b = await repos.episodes.get("ep-b")
        assert await repos.episodes.owner_url("ep-a") == "http://a"
        assert await repos.episodes.owner_url("ep-b") is None
    assert [c.seq for c in stored_a.calls] == [0, 1, 2]
    assert stored_a.calls[1] == call(1, 7)
    assert stored_a.last_active_at == T0 + timedelta(minutes=7)  # the latest call, not the last
    assert stored_b.last_active_at == T0 + timedelta(minutes=2)
    touched = {"calls": [], "last_active_at": second.last_active_at}
    assert stored_b.model_copy(update=touched) == second

    with pytest.raises(ConflictError, match="refused 1 calls"):
        async with db.transaction() as repos:
            await repos.episodes.record_calls_of_episodes([("ep-a", call(1, 9))])  # seq taken
    with pytest.raises(ConflictError, match="refused 2 new episodes"):
        async with db.transaction() as repos:
            await repos.episodes.create_many(
                [
                    (make_episode(spec, "ep-c"), None),
                    (make_episode(make_spec("other"), "ep-d"), None),
                ]
            )
    async with db.transaction() as repos:
        with pytest.raises(NotFoundError):
            await repos.episodes.get("ep-c")  # the statement stored nothing
        assert len((await repos.episodes.get("ep-a")).calls) == 3


# --- trajectories ------------------------------------------------------------------------------


async def test_trajectory_archive_is_idempotent(db: Database) -> None:
    trajectory = make_trajectory()
    async with db.transaction() as repos:
        assert await repos.trajectories.archive(trajectory, stream_entry_id="1700000000000-0")
    async with db.transaction() as repos:
        assert not await repos.trajectories.archive(trajectory, stream_entry_id="1700000000001-0")
        # A redelivery never overwrites what was archived first.
        assert not await repos.trajectories.archive(make_trajectory(answer="Lyon"))
        assert await repos.trajectories.get("traj-1") == trajectory
        assert await repos.trajectories.list() == [trajectory]
        with pytest.raises(NotFoundError):
            await repos.trajectories.get("traj-missing")


async def test_trajectory_archive_lists_by_group_env_and_policy(db: Database) -> None:
    rows = [
        make_trajectory("t0", env_id="env_a", group_id="g1", policy_version=0),
        make_trajectory("t1", env_id="env_a", group_id="g1", policy_version=1),
        make_trajectory("t2", env_id="env_b", group_id="g2", policy_version=1),
        make_trajectory("t3", env_id="env_b", group_id=None, policy_version=2),
    ]
    async with db.transaction() as repos:
        for trajectory in rows:
            await repos.trajectories.archive(trajectory)

    async def ids(**where: Any) -> list[str]:
        return sorted(t.id for t in await repos.trajectories.list(**where))

    async with db.transaction() as repos:
        assert await ids(group_id="g1") == ["t0", "t1"]
        assert await ids(env_id="env_b") == ["t2", "t3"]
        assert await ids(policy_version=1) == ["t1", "t2"]
        assert await ids(env_id="env_a", policy_version=1) == ["t1"]
        first_page = await repos.trajectories.list(limit=2)
        rest = await repos.trajectories.list(limit=10, offset=2)
    assert [t.id for t in first_page + rest] == ["t0", "t1", "t2", "t3"]  # archiving order


# --- the astra-db command ----------------------------------------------------------------------


def _astra_db(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "astra-db"
    assert script.exists(), "the astra-db console script is not installed"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_upgrade_and_current_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'astra.db'}"
    before = _astra_db("current", "--url", url, cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("none")

    upgraded = _astra_db("upgrade", "--url", url, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "0004" in upgraded.stdout

    after = _astra_db("current", cwd=tmp_path, env={"ASTRA_DATABASE_URL": url})
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "0004 (head)"


def test_cli_fails_with_one_line_on_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql://astra:secret@127.0.0.1:1/astra"  # nothing listens on port 1
    result = _astra_db("upgrade", "--url", url, cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith("astra-db upgrade: postgresql://astra:***@127.0.0.1:1/astra: ")
    assert "secret" not in message
