"""``RolloutClient`` against the real rollout app over HTTP: batches, evaluations and teacher
runs from start to their trajectories (a real envhost, synth registry and Redis; the scripted
stub policy as the OpenAI endpoint), the service's 4xx messages reaching ``ServiceError``, a
missing token, and a URL where nothing listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pytest
from envhost_support import weather_spec
from http_support import running
from rollout_support import stack
from synth_support import private_redis

from astra.redis_server import free_port
from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.rollout import RolloutClient
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, JobState, Provenance
from astra_proto.api.rollout import (
    BatchRequest,
    EvaluationRequest,
    PolicyEndpoint,
    TeacherRunRequest,
    TeacherServer,
    TeacherTask,
)
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Settings = Callable[..., EnvhostSettings]


class Run(Protocol):
    @property
    def state(self) -> JobState: ...


Status = TypeVar("Status", bound=Run)

TOKEN = "rollout-test-token"
WEATHER = weather_spec()


def heldout_weather() -> EnvironmentSpec:
    """The weather task as a procedural environment of the held-out entities split."""
    data = WEATHER.model_dump(exclude={"id"}) | {
        "split": "heldout_entities",
        "provenance": Provenance(source="procedural").model_dump(),
    }
    return EnvironmentSpec.model_validate(data)


@dataclass
class Rollout:
    client: RolloutClient
    envhost_url: str
    policy: PolicyEndpoint


@asynccontextmanager
async def rollout_service(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> AsyncIterator[Rollout]:
    """The rollout app on a real port (writes need ``TOKEN``), wired to a real envhost, synth
    registry, Redis and the stub policy; a client of it holding the token."""
    async with stack(database_url, envhost_settings, WEATHER, heldout_weather()) as s:
        synth = create_synth(SynthSettings(database_url=database_url, redis_url=redis_url))
        async with running(synth, free_port()) as synth_url:
            settings = RolloutSettings(
                port=free_port(),
                redis_url=private_redis(redis_url),
                envhost_url=s.envhost_url,
                synth_url=synth_url,
                policy_base_url=s.policy_url,
                policy_backoff_s=0.01,
                api_token=TOKEN,
            )
            async with (
                running(create_app(settings), settings.port) as url,
                RolloutClient(url, token=TOKEN, timeout_s=60) as client,
            ):
                yield Rollout(client, s.envhost_url, PolicyEndpoint(model="solver"))


async def until_ended(read: Callable[[], Awaitable[Status]]) -> Status:
    """Read a run's status until its state is terminal (at most 90 s)."""
    async with asyncio.timeout(90):
        while True:
            status = await read()
            if status.state.terminal:
                return status
            await asyncio.sleep(0.05)


async def test_a_batch_from_start_to_its_summary(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings) as r:
        request = BatchRequest(env_ids=[WEATHER.id], group_size=2, policy=r.policy)
        started = await r.client.start_batch(request)
        done = await until_ended(lambda: r.client.batch_status(started.id))
        listed = await r.client.list_batches()
        with pytest.raises(ServiceError) as ended:
            await r.client.cancel_batch(started.id)
        with pytest.raises(ServiceError) as unknown:
            await r.client.batch_status("batch_nope")
    assert (started.total, started.group_size, started.environments) == (2, 2, 1)
    assert done.state == JobState.SUCCEEDED
    assert (done.done, done.failed, done.published) == (2, 0, 2)
    assert done.summary.finish_reasons == {"final_answer": 2}
    assert started.id in [batch.id for batch in listed]
    assert ended.value.status == 409
    assert "has already ended" in str(ended.value)
    assert unknown.value.status == 404
    assert "no batch 'batch_nope'" in str(unknown.value)


async def test_an_evaluation_from_start_to_its_trajectories(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings) as r:
        request = EvaluationRequest(
            suite="heldout-procedural", categories=["heldout_entities"], limit=1, policy=r.policy
        )
        started = await r.client.start_evaluation(request)
        done = await until_ended(lambda: r.client.evaluation_status(started.id))
        (entry,) = done.entries
        trajectory = await r.client.evaluation_trajectory(started.id, entry.trajectory_id)
        listed = await r.client.list_evaluations()
        with pytest.raises(ServiceError) as refused:
            await r.client.start_evaluation(
                request.model_copy(update={"policy": PolicyEndpoint(base_url="ftp://x")})
            )
        with pytest.raises(ServiceError) as no_trajectory:
            await r.client.evaluation_trajectory(started.id, "nope")
    assert done.state == JobState.SUCCEEDED
    assert (done.total, done.done) == (1, 1)
    assert [c.category for c in done.categories] == ["heldout_entities"]
    assert done.overall is not None
    assert done.overall.mean_reward == pytest.approx(1.0)
    assert (trajectory.id, trajectory.env_id) == (entry.trajectory_id, heldout_weather().id)
    assert [e.id for e in listed] == [started.id]
    assert listed[0].entries == []  # listings leave out the per-entry rows
    assert refused.value.status == 422
    assert "policy.base_url must be an http(s) URL" in str(refused.value)
    assert no_trajectory.value.status == 404


async def test_a_teacher_run_from_start_to_its_pages(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings) as r:
        server = TeacherServer(name="weather", url=f"{r.envhost_url}/envs/{WEATHER.id}/mcp")
        tasks = [
            TeacherTask(id=f"t{i}", question="How warm in Paris?", server="weather")
            for i in range(3)
        ]
        request = TeacherRunRequest(tasks=tasks, servers=[server], policy=r.policy, label="x")
        started = await r.client.start_teacher_run(request)
        done = await until_ended(lambda: r.client.teacher_run_status(started.id))
        pages = [await r.client.teacher_run_trajectories(started.id, limit=2)]
        while (offset := pages[-1].next_offset) is not None:
            pages.append(await r.client.teacher_run_trajectories(started.id, offset=offset))
        listed = await r.client.list_teacher_runs()
        with pytest.raises(ServiceError) as ended:
            await r.client.cancel_teacher_run(started.id)
    assert (started.total, started.label, started.model) == (3, "x", "solver")
    assert done.state == JobState.SUCCEEDED
    assert (done.done, done.failed) == (3, 0)
    assert [len(page.items) for page in pages] == [2, 1]
    assert {page.total for page in pages} == {3}
    assert {t.metadata.get("task_id") for page in pages for t in page.items} == {"t0", "t1", "t2"}
    assert [run.id for run in listed] == [started.id]
    assert ended.value.status == 409


@asynccontextmanager
async def bare_rollout(redis_url: str) -> AsyncIterator[str]:
    """The rollout app with a token, its envhost and registry where nothing listens."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = RolloutSettings(
        port=free_port(),
        redis_url=private_redis(redis_url),
        envhost_url=nowhere,
        synth_url=nowhere,
        policy_base_url=f"{nowhere}/v1",
        api_token=TOKEN,
    )
    async with running(create_app(settings), settings.port) as url:
        yield url


async def test_refusals_reach_service_error_with_the_services_message(redis_url: str) -> None:
    batch = BatchRequest(env_ids=[WEATHER.id])
    async with bare_rollout(redis_url) as url:
        async with RolloutClient(url, token=TOKEN) as client:
            with pytest.raises(ServiceError) as registry_down:
                await client.start_batch(batch)
            with pytest.raises(ServiceError) as no_run:
                await client.teacher_run_status("teacher_nope")
            with pytest.raises(ServiceError) as no_evaluation:
                await client.cancel_evaluation("eval_nope")
        async with RolloutClient(url) as tokenless:
            with pytest.raises(ServiceError) as no_token:
                await tokenless.start_batch(batch)
            assert await tokenless.list_batches() == []  # reads need no token
    assert registry_down.value.status == 502
    assert str(registry_down.value).startswith("rollout: POST /v1/batches answered 502: ")
    assert "unreachable" in registry_down.value.detail
    assert no_run.value.status == 404
    assert "no teacher run 'teacher_nope'" in str(no_run.value)
    assert no_evaluation.value.status == 404
    assert no_token.value.status == 401
    assert not isinstance(no_token.value, ServiceUnreachable)


async def test_an_unreachable_url_raises_service_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RolloutClient(url) as client:
        with pytest.raises(ServiceUnreachable) as down:
            await client.start_batch(BatchRequest(env_ids=[WEATHER.id]))
    assert down.value.status == 0
    assert str(down.value).startswith(f"cannot reach rollout at {url} (POST /v1/batches: ")
