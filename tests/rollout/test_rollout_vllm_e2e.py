"""End to end: episodes of procedural environments on a real envhost over MCP, driven by the
real vLLM policy server, with MiniLM-banded distractors, trajectories on a real Redis stream
read back as Trajectory with token arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
import redis.asyncio as aioredis
from http_support import running
from rollout_support import work_queue
from synth_support import private_redis

from astra.redis_server import free_port
from astra_common.db import Database
from astra_common.streams import StreamConsumer, StreamPublisher
from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_proto import TRAJECTORY_STREAM, EnvironmentSpec, StreamEnvelope, Trajectory
from astra_proto.api.rollout import (
    BatchRequest,
    DistractorOptions,
    EpisodeLimits,
    PolicyEndpoint,
    SamplingParams,
    TeacherRunRequest,
    TeacherServer,
    TeacherTask,
)
from astra_rollout.batches import BatchRunner
from astra_rollout.distractors import ToolIndex
from astra_rollout.envhost_client import EnvhostClient
from astra_rollout.policy import PolicyClient
from astra_rollout.policy_server import PolicyServer, PolicyServerSettings
from astra_rollout.settings import RolloutSettings
from astra_rollout.teacher import TeacherRunner
from astra_synth.procedural import generate_environments

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

VLLM_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
ENVS = generate_environments(10, seed=5)  # two per domain: the pool for distractors
GROUP_SIZE = 2


@pytest.fixture(scope="module")
def server(
    default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyServer]:
    if not (VLLM_VENV / "bin" / "python").exists():
        pytest.skip(f"no vLLM venv at {VLLM_VENV}: run scripts/vllm-venv.sh")
    settings = PolicyServerSettings(
        venv=VLLM_VENV,
        model_dir=default_model_dir,
        port=0,
        log_path=tmp_path_factory.mktemp("vllm") / "server.log",
    )
    with PolicyServer(settings) as running_server:
        yield running_server


class Specs:
    """The batch runner's environment source, over the generated specs."""

    async def get(self, env_id: str) -> EnvironmentSpec:
        return next(spec for spec in ENVS if spec.id == env_id)

    async def query(self, query: object) -> list[str]:
        return [spec.id for spec in ENVS]


async def test_batch_against_envhost_and_vllm_lands_on_the_stream(
    server: PolicyServer,
    database_url: str,
    redis_url: str,
    envhost_settings: Callable[..., EnvhostSettings],
) -> None:
    async with Database(database_url) as database, database.transaction() as repos:
        for spec in ENVS:
            await repos.environments.register(spec)
    index = ToolIndex()
    options = DistractorOptions(enabled=True, per_band=1, seed=4)
    index.add_environments(ENVS)
    tasks = [ENVS[0], ENVS[1]]
    stream = f"{TRAJECTORY_STREAM}:e2e:{free_port()}"
    envhost = envhost_settings(tool_timeout_s=10.0)
    redis = aioredis.Redis.from_url(redis_url)
    publisher = StreamPublisher(redis, stream)

    async def publish(trajectory: Trajectory) -> None:
        envelope = StreamEnvelope[Trajectory](
            record_id=trajectory.id, producer="e2e", payload=trajectory
        )
        await (await publisher.publish(envelope))

    async def policy_version() -> int:
        return server.served_version

    try:
        async with (
            publisher,
            running(create_envhost(envhost), envhost.port) as envhost_url,
            httpx.AsyncClient(timeout=120.0) as http,
            httpx2.AsyncClient(timeout=120.0) as mcp_http,
            work_queue(private_redis(redis_url)) as queue,
        ):
            runner = BatchRunner(
                RolloutSettings(policy_base_url=server.base_url, policy_model=server.served_model),
                store=queue.store,
                queue=queue,
                episodes=EnvhostClient(envhost_url, http=http, mcp_http=mcp_http),
                registry=Specs(),
                publish=publish,
                policy_version=policy_version,
                policy_http=http,
                distractors=index.for_batch,
            )
            queue.start()
            started = await runner.start(
                BatchRequest(
                    env_ids=[spec.id for spec in tasks],
                    group_size=GROUP_SIZE,
                    policy=PolicyEndpoint(),
                    sampling=SamplingParams(temperature=1.0, max_tokens=96, seed=1),
                    limits={"max_turns": 3, "token_budget": 2048, "timeout_s": 240},
                    distractors=options,
                )
            )
            status = await runner.wait(started.id)
            await runner.aclose()
        assert status.state == "succeeded", status

        consumer = StreamConsumer(redis, stream, "trainer", "e2e", Trajectory)
        await consumer.ensure_group()
        deliveries = await consumer.read(count=100)
        trajectories = [delivery.payload for delivery in deliveries]
    finally:
        await redis.aclose()

    assert len(trajectories) == GROUP_SIZE * len(tasks)
    expected = {spec.id: await index.for_batch(spec, options) for spec in tasks}
    for trajectory in trajectories:
        assert trajectory.failure_reason is None, trajectory.failure_reason
        assert trajectory.reward is not None
        assert trajectory.env_id in expected
        offered = sorted(ref.tool_name for ref in expected[trajectory.env_id])
        assert offered
        assert sorted(trajectory.distractor_tools) == offered
        assert set(offered) <= {tool.name for tool in trajectory.tools}
        assert not trajectory.text_only, trajectory.metadata
        assert trajectory.token_ids
        assert trajectory.logprobs is not None
        assert trajectory.loss_mask is not None
        assert len(trajectory.token_ids) == len(trajectory.logprobs) == len(trajectory.loss_mask)
        assert 0 < sum(trajectory.loss_mask) < len(trajectory.loss_mask)  # prompt and policy


async def test_teacher_run_through_real_vllm_against_mcp_tools(
    server: PolicyServer,
    database_url: str,
    redis_url: str,
    envhost_settings: Callable[..., EnvhostSettings],
) -> None:
    """The teacher path with a real model: vLLM plays a task against a real envhost
    environment's MCP endpoint (the emulator path is covered with the real synth endpoint in
    test_rollout_teacher.py)."""
    spec = ENVS[2]
    async with Database(database_url) as database, database.transaction() as repos:
        await repos.environments.register(spec)
    envhost = envhost_settings(tool_timeout_s=10.0)
    async with (
        running(create_envhost(envhost), envhost.port) as envhost_url,
        httpx.AsyncClient(timeout=120.0) as http,
        work_queue(private_redis(redis_url)) as queue,
    ):
        runner = TeacherRunner(
            store=queue.store,
            queue=queue,
            http=http,
            policy_factory=lambda endpoint, token_ids: PolicyClient(
                http=http, base_url=server.base_url, model=server.served_model
            ),
            emulator_url="http://127.0.0.1:9",  # unused: the server has an MCP URL
        )
        queue.start()
        request = TeacherRunRequest(
            tasks=[TeacherTask(id="t0", question=spec.task, server="env")],
            servers=[TeacherServer(name="env", url=f"{envhost_url}/envs/{spec.id}/mcp")],
            sampling=SamplingParams(temperature=0.0, max_tokens=96),
            limits=EpisodeLimits(max_turns=3, token_budget=4096, timeout_s=240),
        )
        started = await runner.start(request)
        status = await runner.wait(started.id)
        (trajectory,) = (await runner.trajectories(started.id, 0, 10)).items
    assert status.state == "succeeded", status
    assert trajectory.failure_reason is None, trajectory.failure_reason
    assert trajectory.model == server.served_model
    assert {tool.name for tool in trajectory.tools} == set(spec.tool_names())
    assert any(m.role == "assistant" for m in trajectory.messages)
    assert trajectory.metadata["tools_emulated"] is False
    assert trajectory.reward is None
