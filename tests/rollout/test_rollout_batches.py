"""Batches over REST: a real rollout app, synth registry, envhost, Redis stream and stub policy."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from envhost_support import weather_spec
from http_support import running
from rollout_support import Stack, multi_turn_spec, stack

from astra.redis_server import free_port
from astra_common.streams import StreamConsumer
from astra_envhost.settings import EnvhostSettings
from astra_proto import POLICY_KEY, TRAJECTORY_STREAM, FinishReason, PolicyPointer, Trajectory
from astra_proto.api.rollout import BatchStatus
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]


@dataclass
class Service:
    stack: Stack
    api: httpx.AsyncClient
    redis: aioredis.Redis


@asynccontextmanager
async def rollout_service(
    database_url: str, redis_url: str, envhost_settings: Settings, **overrides: Any
) -> AsyncIterator[Service]:
    """The rollout app on a real port, wired to a real envhost, synth registry and Redis."""
    specs = (weather_spec(), multi_turn_spec())
    async with stack(database_url, envhost_settings, *specs) as s:
        synth = create_synth(SynthSettings(database_url=database_url, redis_url=redis_url))
        async with running(synth, free_port()) as synth_url:
            settings = RolloutSettings(
                port=free_port(),
                redis_url=redis_url,
                envhost_url=s.envhost_url,
                synth_url=synth_url,
                policy_base_url=s.policy_url,
                policy_backoff_s=0.01,
                **overrides,
            )
            async with (
                running(create_app(settings), settings.port) as url,
                httpx.AsyncClient(base_url=url, timeout=60) as api,
                aioredis.Redis.from_url(redis_url) as redis,
            ):
                yield Service(stack=s, api=api, redis=redis)


async def wait_done(api: httpx.AsyncClient, batch_id: str) -> BatchStatus:
    async with asyncio.timeout(90):
        while True:
            response = await api.get(f"/v1/batches/{batch_id}")
            assert response.status_code == 200, response.text
            status = BatchStatus.model_validate(response.json())
            if status.state.terminal:
                return status
            await asyncio.sleep(0.05)


async def published(redis: aioredis.Redis, batch_id: str) -> list[Trajectory]:
    """Every trajectory of ``batch_id`` on the stream, read through a fresh consumer group."""
    consumer = StreamConsumer(
        redis, TRAJECTORY_STREAM, f"test-{uuid.uuid4().hex[:8]}", "reader", Trajectory
    )
    await consumer.ensure_group()
    found: list[Trajectory] = []
    while deliveries := await consumer.read(count=500, block_ms=100):
        found += [d.payload for d in deliveries if (d.payload.group_id or "").startswith(batch_id)]
        await consumer.ack(deliveries)
    return found


async def test_batch_runs_groups_and_publishes_every_trajectory(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings) as svc:
        pointer = PolicyPointer(version=7, checkpoint_uri="file:///ckpt/7", base_model="smol")
        await svc.redis.set(POLICY_KEY, pointer.model_dump_json())
        env_ids = [weather_spec().id, multi_turn_spec().id]
        response = await svc.api.post(
            "/v1/batches",
            json={"env_ids": env_ids, "group_size": 3, "policy": {"model": "solver"}},
        )
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]
        status = await wait_done(svc.api, batch_id)
        trajectories = await published(svc.redis, batch_id)
        listing = (await svc.api.get("/v1/batches")).json()
    assert status.state == "succeeded"
    assert (status.total, status.done, status.published, status.failed) == (6, 6, 6, 0)
    assert status.summary.scored == 6
    assert status.summary.mean_turns is not None
    assert status.summary.mean_tool_calls == pytest.approx(2.0)
    assert status.summary.groups_done == 2
    assert status.summary.finish_reasons == {"final_answer": 6}
    assert batch_id in [b["id"] for b in listing]
    assert len(trajectories) == 6
    assert Counter(t.group_id for t in trajectories) == {f"{batch_id}:0": 3, f"{batch_id}:1": 3}
    assert {t.env_id for t in trajectories} == set(env_ids)
    assert {t.policy_version for t in trajectories} == {7}
    assert all(not t.text_only for t in trajectories)
    assert len({t.episode_id for t in trajectories}) == 6
    single = [t for t in trajectories if t.env_id == env_ids[0]]
    assert all(t.reward is not None and t.reward.f1 == pytest.approx(1.0) for t in single)
    rewards = [t.reward.f1 for t in trajectories if t.reward is not None]
    assert status.summary.mean_reward == pytest.approx(sum(rewards) / 6)


async def test_failed_episodes_are_published_as_failed(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings, policy_retries=1) as svc:
        response = await svc.api.post(
            "/v1/batches",
            json={"env_ids": [weather_spec().id], "group_size": 2, "policy": {"model": "broken"}},
        )
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]
        status = await wait_done(svc.api, batch_id)
        trajectories = await published(svc.redis, batch_id)
    assert status.state == "succeeded"
    assert (status.done, status.failed, status.published) == (2, 2, 2)
    assert status.summary.scored == 0
    assert status.summary.mean_reward is None
    assert len(status.recent_failures) == 2
    assert "HTTP 500" in status.recent_failures[0].reason
    assert len(trajectories) == 2
    for trajectory in trajectories:
        assert trajectory.finish_reason == FinishReason.ERROR
        assert "PolicyError" in (trajectory.failure_reason or "")
        assert trajectory.reward is None


async def test_query_selects_environments_from_the_registry(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(database_url, redis_url, envhost_settings) as svc:
        response = await svc.api.post(
            "/v1/batches",
            json={"query": {"domain": "travel", "limit": 5}, "group_size": 1,
                  "policy": {"model": "answer"}},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        status = await wait_done(svc.api, response.json()["id"])
        nothing = await svc.api.post(
            "/v1/batches", json={"query": {"domain": "nowhere"}, "policy": {"model": "answer"}}
        )
    assert status.environments == 2
    assert status.done == 2
    assert nothing.status_code == 422
    assert "no environment matches" in nothing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"env_ids": ["env_unknown"]}, 404, "env_unknown"),
        ({"env_ids": [], "group_size": 2}, 422, "at least 1"),
        ({"group_size": 2}, 422, "exactly one of env_ids and query"),
        ({"env_ids": ["a"], "query": {}}, 422, "exactly one of env_ids and query"),
        ({"env_ids": ["a", "a"]}, 422, "must not repeat"),
        ({"env_ids": ["a"], "group_size": 0}, 422, "greater than or equal to 1"),
        ({"env_ids": ["a"], "sampling": {"temperature": 9}}, 422, "less than or equal to 2"),
        ({"env_ids": ["a"], "surprise": 1}, 422, "Extra inputs"),
        ({"env_ids": ["a"], "policy": {"base_url": "ftp://x"}}, 422, "http(s) URL"),
    ],
)
async def test_bad_batch_requests_get_4xx_with_a_message(
    database_url: str,
    redis_url: str,
    envhost_settings: Settings,
    body: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    async with rollout_service(
        database_url, redis_url, envhost_settings, max_batch_episodes=100
    ) as svc:
        response = await svc.api.post("/v1/batches", json=body)
        too_big = await svc.api.post(
            "/v1/batches", json={"env_ids": [weather_spec().id], "group_size": 101}
        )
        missing = await svc.api.get("/v1/batches/batch_nope")
    assert response.status_code == status, response.text
    assert needle in response.text
    assert too_big.status_code == 422
    assert "max_batch_episodes" in too_big.json()["detail"]
    assert missing.status_code == 404


async def test_cancel_stops_a_running_batch(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_service(
        database_url, redis_url, envhost_settings, max_concurrent_episodes=2
    ) as svc:
        response = await svc.api.post(
            "/v1/batches",
            json={
                "env_ids": [weather_spec().id],
                "group_size": 50,
                "policy": {"model": "endless"},
                "limits": {"max_turns": 20},
            },
        )
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]
        cancelled = await svc.api.post(f"/v1/batches/{batch_id}/cancel")
        again = await svc.api.post(f"/v1/batches/{batch_id}/cancel")
        unknown = await svc.api.post("/v1/batches/batch_nope/cancel")
        open_episodes = (await svc.stack.http.get(f"{svc.stack.envhost_url}/v1/episodes")).json()
    assert cancelled.status_code == 200, cancelled.text
    status = BatchStatus.model_validate(cancelled.json())
    assert status.state == "cancelled"
    assert status.cancelled == 50 - status.done
    assert status.cancelled > 0
    assert status.finished_at is not None
    assert again.status_code == 409
    assert unknown.status_code == 404
    assert open_episodes == []  # cancelled episodes were closed
