"""The batch runner in process: distractor selection wired into episodes, bounded concurrency."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from envhost_support import weather_spec
from rollout_support import stack, work_queue
from synth_support import private_redis

from astra_envhost.settings import EnvhostSettings
from astra_proto import DistractorRef, EnvironmentSpec, Trajectory
from astra_proto.api.rollout import BatchRequest, DistractorOptions, PolicyEndpoint
from astra_rollout.batches import BatchError, BatchRunner
from astra_rollout.settings import RolloutSettings
from astra_synth.procedural import generate_environments

pytestmark = pytest.mark.timeout(120)


class Specs:
    """An in-memory environment source (the registry's own client is tested over REST)."""

    def __init__(self, *specs: EnvironmentSpec) -> None:
        self.specs = {spec.id: spec for spec in specs}

    async def get(self, env_id: str) -> EnvironmentSpec:
        return self.specs[env_id]

    async def query(self, query: object) -> list[str]:
        return list(self.specs)


async def test_distractors_chosen_per_group_are_offered_in_every_episode(
    database_url: str, redis_url: str, envhost_settings: Callable[..., EnvhostSettings]
) -> None:
    spec = weather_spec()
    other = generate_environments(1, seed=0)[0]
    chosen = DistractorRef(env_id=other.id, tool_name=other.tool_names()[0])
    asked: list[tuple[str, DistractorOptions]] = []

    async def select(env: EnvironmentSpec, settings: DistractorOptions) -> list[DistractorRef]:
        asked.append((env.id, settings))
        return [chosen]

    published: list[Trajectory] = []

    async def publish(trajectory: Trajectory) -> None:
        published.append(trajectory)

    async def version() -> int:
        return 2

    async with (
        stack(database_url, envhost_settings, spec, other) as s,
        work_queue(private_redis(redis_url), capacity=2) as queue,
    ):
        runner = BatchRunner(
            RolloutSettings(max_concurrent_episodes=2, policy_base_url=s.policy_url),
            store=queue.store,
            queue=queue,
            episodes=s.episodes,
            registry=Specs(spec),
            publish=publish,
            policy_version=version,
            policy_http=s.http,
            distractors=select,
        )
        queue.start()
        started = await runner.start(
            BatchRequest(
                env_ids=[spec.id],
                group_size=3,
                policy=PolicyEndpoint(model="solver"),
                distractors=DistractorOptions(enabled=True, per_band=1),
            )
        )
        status = await runner.wait(started.id)
    assert status.state == "succeeded"
    assert [env_id for env_id, _ in asked] == [spec.id]  # once per group
    assert asked[0][1].per_band == 1
    assert len(published) == 3
    for trajectory in published:
        assert trajectory.distractor_tools == [chosen.tool_name]
        assert chosen.tool_name in {t.name for t in trajectory.tools}
        assert trajectory.policy_version == 2
        assert trajectory.reward is not None
        assert trajectory.reward.n_calls == 2


async def test_distractors_asked_of_a_runner_without_selection_are_refused(
    redis_url: str,
) -> None:
    spec = weather_spec()

    async def publish(trajectory: Trajectory) -> None:
        raise AssertionError("nothing runs")

    async def version() -> int:
        return 0

    async with httpx.AsyncClient() as http, work_queue(private_redis(redis_url)) as queue:
        runner = BatchRunner(
            RolloutSettings(policy_base_url="http://127.0.0.1:9/v1"),
            store=queue.store,
            queue=queue,
            episodes=None,  # type: ignore[arg-type]  # never reached
            registry=Specs(spec),
            publish=publish,
            policy_version=version,
            policy_http=http,
        )
        with pytest.raises(BatchError, match="not available") as refused:
            await runner.start(
                BatchRequest(env_ids=[spec.id], distractors=DistractorOptions(enabled=True))
            )
        assert refused.value.status == 422
        assert await runner.all() == []
