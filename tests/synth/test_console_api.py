"""The web console's JSON routes (episodes, trajectories, training metrics) over a real synth
API and a migrated database written through the repositories, and the console's static files."""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from envhost_support import register, weather_spec
from fastapi import FastAPI, HTTPException
from http_support import running
from synth_support import private_redis, publish_as_rollout, synth_service

from astra.redis_server import free_port
from astra_common.db import Database
from astra_proto import (
    Episode,
    EpisodeState,
    FinishReason,
    FunctionCall,
    Message,
    RewardBreakdown,
    Timings,
    ToolCall,
    ToolCallRecord,
    Trajectory,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC = REPO_ROOT / "services/synth/src/astra_synth/console/static"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def episode(env_id: str, number: int, calls: int, reward: RewardBreakdown | None) -> Episode:
    spec = weather_spec()
    return Episode(
        id=f"ep_{number}",
        env_id=env_id,
        seed=number,
        state=EpisodeState.SCORED if reward else EpisodeState.OPEN,
        mcp_url=f"http://envhost/episodes/ep_{number}/mcp",
        tools=spec.tool_specs(),
        calls=[
            ToolCallRecord(
                seq=seq,
                tool_name="get_city_id",
                arguments={"name": "Paris"} if seq % 2 == 0 else {"name": "Atlantis"},
                result={"city_id": "c-75"} if seq % 2 == 0 else None,
                error=None if seq % 2 == 0 else "ValueError: unknown city 'Atlantis'",
                latency_ms=1.5 + seq,
                turn=0,
                at=T0 + timedelta(minutes=number, seconds=seq),
            )
            for seq in range(calls)
        ],
        reward=reward,
        created_at=T0 + timedelta(minutes=number),
        last_active_at=T0 + timedelta(minutes=number, seconds=calls),
    )


def trajectory(env_id: str, number: int, group: str, version: int) -> Trajectory:
    return Trajectory(
        id=f"traj_{number}",
        env_id=env_id,
        group_id=group,
        policy_version=version,
        messages=[
            Message(role="user", content="How warm will it be in Paris tomorrow?"),
            Message(
                role="assistant",
                tool_calls=[
                    ToolCall(
                        id="call_1",
                        function=FunctionCall(name="get_city_id", arguments='{"name": "Paris"}'),
                    )
                ],
            ),
            Message(role="tool", tool_call_id="call_1", name="get_city_id", content='{"a": 1}'),
            Message(role="assistant", content="21 degrees."),
        ],
        tools=weather_spec().tool_specs(),
        reward=RewardBreakdown.compute(2, ["q1"], 1),
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=T0, finished_at=T0 + timedelta(seconds=3)),
    )


@pytest.fixture
async def seeded(database_url: str) -> dict[str, str]:
    """Two environments, three episodes (one scored) and three archived trajectories."""
    travel, finance = weather_spec("travel"), weather_spec("finance")
    await register(database_url, travel, finance)
    async with Database(database_url) as database, database.transaction() as repos:
        await repos.episodes.create(episode(travel.id, 1, 3, RewardBreakdown.compute(2, ["q1"], 3)))
        await repos.episodes.create(episode(travel.id, 2, 0, None))
        await repos.episodes.create(episode(finance.id, 3, 1, None))
        for number, (env, group, version) in enumerate(
            [(travel.id, "g1", 0), (travel.id, "g1", 1), (finance.id, "g2", 1)]
        ):
            assert await repos.trajectories.archive(trajectory(env, number, group, version))
    return {"travel": travel.id, "finance": finance.id}


@asynccontextmanager
async def synth_client(
    database_url: str, redis_url: str, tmp_path: Path, trainer_url: str = "http://127.0.0.1:9"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real synth API (nothing listens at its envhost or, by default, trainer)."""
    async with (
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url="http://127.0.0.1:9",
            tmp_path=tmp_path,
            trainer_url=trainer_url,
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
async def synth(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with synth_client(database_url, redis_url, tmp_path) as http:
        yield http


async def test_episodes_are_listed_newest_first_with_filters_and_paging(
    seeded: dict[str, str], synth: httpx.AsyncClient
) -> None:
    page = (await synth.get("/v1/episodes")).json()
    assert page["total"] == 3
    assert [e["id"] for e in page["items"]] == ["ep_3", "ep_2", "ep_1"]
    first = page["items"][2]
    assert first["calls"] == 3
    assert first["state"] == "scored"
    assert first["f1"] == pytest.approx(RewardBreakdown.compute(2, ["q1"], 3).f1)
    assert page["items"][1]["calls"] == 0
    assert page["items"][1]["f1"] is None

    travel = (await synth.get("/v1/episodes", params={"env_id": seeded["travel"]})).json()
    assert travel["total"] == 2
    assert {e["id"] for e in travel["items"]} == {"ep_1", "ep_2"}
    scored = (await synth.get("/v1/episodes", params={"state": "scored"})).json()
    assert [e["id"] for e in scored["items"]] == ["ep_1"]
    paged = (await synth.get("/v1/episodes", params={"limit": 1, "offset": 1})).json()
    assert paged["total"] == 3
    assert [e["id"] for e in paged["items"]] == ["ep_2"]
    assert (await synth.get("/v1/episodes", params={"limit": 0})).status_code == 422
    assert (await synth.get("/v1/episodes", params={"state": "asleep"})).status_code == 422


async def test_an_episode_comes_with_its_call_log(
    seeded: dict[str, str], synth: httpx.AsyncClient
) -> None:
    response = await synth.get("/v1/episodes/ep_1")
    assert response.status_code == 200, response.text
    got = Episode.model_validate(response.json())
    assert got.env_id == seeded["travel"]
    assert [c.seq for c in got.calls] == [0, 1, 2]
    assert got.calls[0].result == {"city_id": "c-75"}
    assert got.calls[1].error == "ValueError: unknown city 'Atlantis'"
    assert got.calls[2].latency_ms == 3.5
    assert got.reward is not None
    assert got.reward.solved_ids == ["q1"]
    missing = await synth.get("/v1/episodes/ep_nope")
    assert missing.status_code == 404
    assert "ep_nope" in missing.json()["detail"]


async def test_trajectories_are_listed_and_read(
    seeded: dict[str, str], synth: httpx.AsyncClient
) -> None:
    page = (await synth.get("/v1/trajectories")).json()
    assert page["total"] == 3
    assert {t["id"] for t in page["items"]} == {"traj_0", "traj_1", "traj_2"}
    assert all(t["finish_reason"] == "final_answer" for t in page["items"])
    group = (await synth.get("/v1/trajectories", params={"group_id": "g1"})).json()
    assert {t["id"] for t in group["items"]} == {"traj_0", "traj_1"}
    both = await synth.get(
        "/v1/trajectories", params={"env_id": seeded["travel"], "policy_version": 1}
    )
    assert [t["id"] for t in both.json()["items"]] == ["traj_1"]
    assert both.json()["items"][0]["group_id"] == "g1"
    assert (await synth.get("/v1/trajectories", params={"limit": 1})).json()["total"] == 3

    one = await synth.get("/v1/trajectories/traj_2")
    assert one.status_code == 200, one.text
    got = Trajectory.model_validate(one.json())
    assert got == trajectory(seeded["finance"], 2, "g2", 1)
    missing = await synth.get("/v1/trajectories/traj_nope")
    assert missing.status_code == 404
    assert "traj_nope" in missing.json()["detail"]


async def test_trajectories_published_to_a_running_synth_appear_in_the_console(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The synth API runs the archiver: what rollout's publisher writes to the stream is
    listed by the console's trajectories API without anything else running."""
    stream_url = private_redis(redis_url)
    published = [trajectory("env_travel", number, "g7", number % 2) for number in range(3)]
    async with (
        synth_service(
            database_url=database_url,
            redis_url=stream_url,
            envhost_url="http://127.0.0.1:9",
            tmp_path=tmp_path,
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        stream = aioredis.Redis.from_url(stream_url)
        try:
            await publish_as_rollout(stream, published)
        finally:
            await stream.aclose()

        async with asyncio.timeout(120):
            while True:
                page = (await http.get("/v1/trajectories")).json()
                if page["total"] >= len(published):
                    break
                await asyncio.sleep(0.2)
        assert page["total"] == 3
        assert {t["id"] for t in page["items"]} == {"traj_0", "traj_1", "traj_2"}
        assert {t["group_id"] for t in page["items"]} == {"g7"}
        versioned = (await http.get("/v1/trajectories", params={"policy_version": 1})).json()
        assert [t["id"] for t in versioned["items"]] == ["traj_1"]
        one = await http.get("/v1/trajectories/traj_2")
        assert one.status_code == 200, one.text
        assert Trajectory.model_validate(one.json()) == published[2]


async def test_training_metrics_say_when_the_trainer_is_unreachable(
    synth: httpx.AsyncClient,
) -> None:
    for path in ("/v1/training/runs", "/v1/training/metrics"):
        response = await synth.get(path)
        assert response.status_code == 502
        assert "trainer unreachable at http://127.0.0.1:9" in response.json()["detail"]


def fake_trainer(runs: Any, metrics: dict[str, Any]) -> FastAPI:
    """A test double of the trainer's API: ``GET /v1/runs`` and ``/v1/runs/{id}/metrics``."""
    app = FastAPI()

    @app.get("/v1/runs")
    async def list_runs() -> Any:
        return runs

    @app.get("/v1/runs/{run_id}/metrics")
    async def run_metrics(run_id: str) -> Any:
        if run_id not in metrics:
            raise HTTPException(404, detail="no such run")
        return metrics[run_id]

    return app


RUNS = [
    {"run_id": "grpo-2", "kind": "grpo", "state": "running", "updated_at": "2026-11-02T10:00:00Z"},
    {"run_id": "sft-1", "kind": "sft", "state": "finished", "updated_at": "2026-11-01T10:00:00Z"},
]
STEPS = [
    {"step": 2, "loss": 0.5, "reward_mean": 0.4, "batch_fill_ratio": 1.0, "policy_version": 2},
    {"step": 1, "loss": 0.9, "reward_mean": 0.2, "batch_fill_ratio": 0.5, "policy_version": 1},
]
# The trainer's log as it writes it: other events between steps, and bulky fields in steps.
LOG = [
    {"event": "step_started", "version": 1, "records": ["r1", "r2"]},
    {**STEPS[1], "records": ["r1", "r2"], "rejected": {"no_variance": 1}},
    {"event": "step_started", "version": 2, "records": ["r3"]},
    STEPS[0],
]


async def test_training_metrics_are_relayed_from_the_trainer(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    trainer = fake_trainer(RUNS, {"grpo-2": LOG, "sft-1": {"metrics": STEPS[:1]}, "odd": 7})
    async with (
        running(trainer, free_port()) as trainer_url,
        synth_client(database_url, redis_url, tmp_path, trainer_url) as synth,
    ):
        runs = (await synth.get("/v1/training/runs")).json()
        assert runs["runs"] == RUNS
        latest = (await synth.get("/v1/training/metrics")).json()
        assert latest["run_id"] == "grpo-2"  # the most recently updated run
        assert latest["steps"] == [STEPS[1], STEPS[0]]  # steps only, in order, scalars only
        sft = (await synth.get("/v1/training/metrics", params={"run_id": "sft-1"})).json()
        assert sft["steps"] == STEPS[:1]
        unknown = await synth.get("/v1/training/metrics", params={"run_id": "nope"})
        assert unknown.status_code == 404
        assert "run 'nope'" in unknown.json()["detail"]
        odd = await synth.get("/v1/training/metrics", params={"run_id": "odd"})
        assert odd.status_code == 502
        assert "not a list of JSON objects" in odd.json()["detail"]


async def test_the_console_page_and_every_module_it_imports_are_served(
    synth: httpx.AsyncClient,
) -> None:
    index = await synth.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert '<script type="module" src="/console/js/app.js">' in index.text
    css = await synth.get("/console/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")

    # Follow every relative import from the entry module: each must be served as JavaScript.
    pending, seen = ["js/app.js"], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        module = await synth.get(f"/console/{path}")
        assert module.status_code == 200, path
        assert module.headers["content-type"].startswith("text/javascript"), path
        folder = path.rsplit("/", 1)[0]
        for target in re.findall(r'^import .* from "(\.{1,2}/[^"]+)";', module.text, re.M):
            parts = [*folder.split("/"), *target.split("/")]
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            pending.append("/".join(resolved))
    assert {"js/app.js", "js/dag.js", "js/pages/environments.js", "js/pages/training.js"} <= seen

    for bad in ("/console/nope.js", "/console/../app.py", "/console/%2e%2e/settings.py"):
        assert (await synth.get(bad)).status_code == 404, bad


def test_console_scripts_never_parse_data_as_markup() -> None:
    scripts = sorted(STATIC.rglob("*.js"))
    assert scripts
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|Function\("
    )
    offenders = [f"{p.name}: {m.group()}" for p in scripts for m in sinks.finditer(p.read_text())]
    assert offenders == []


def test_every_console_file_is_package_data() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "services/synth/pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["astra_synth"]
    package = STATIC.parents[1]
    # setuptools expands these globs relative to the package folder, as Path.glob does.
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    files = {path for path in STATIC.rglob("*") if path.is_file()}
    assert STATIC / "index.html" in files
    assert sorted(str(p.relative_to(package)) for p in files - shipped) == []
