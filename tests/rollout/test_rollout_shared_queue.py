"""Two rollout replicas on one Redis: runs are read and cancelled from either, their episodes
spread over both, and a replica that stops mid-run loses nothing.

Each replica is a real rollout app over HTTP, with a real synth registry, envhost and Redis. A
replica whose policy endpoint never answers holds its episodes as long as the test wants, so
which replica holds what is known without timing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from envhost_support import weather_spec
from http_support import running
from rollout_support import Stack, stack
from synth_support import private_redis, silent_server

from astra.redis_server import free_port
from astra_common.streams import StreamConsumer
from astra_envhost.settings import EnvhostSettings
from astra_proto import TRAJECTORY_STREAM, EnvironmentSpec, Provenance, Trajectory
from astra_proto.api.rollout import BatchStatus
from astra_rollout.app import create_app
from astra_rollout.run_store import unit_trajectory_id
from astra_rollout.settings import RolloutSettings
from astra_rollout.work_queue import WORK_GROUP, WORK_STREAM, WorkQueue
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings

pytestmark = pytest.mark.timeout(180)

Settings = Callable[..., EnvhostSettings]
WAIT_S = 90.0


@dataclass
class Replica:
    api: httpx.AsyncClient
    queue: WorkQueue


@dataclass
class Deployment:
    """envhost, synth, the scripted policy, a policy that never answers, and one Redis; rollout
    replicas are added with ``replica``."""

    stack: Stack
    synth_url: str
    silent_url: str
    redis_url: str
    redis: aioredis.Redis
    exits: AsyncExitStack

    async def replica(self, *, silent: bool = False, **overrides: Any) -> Replica:
        """A rollout replica; ``silent``: its default policy endpoint never answers."""
        settings = RolloutSettings(
            port=free_port(),
            redis_url=self.redis_url,
            envhost_url=self.stack.envhost_url,
            synth_url=self.synth_url,
            policy_base_url=f"{self.silent_url}/v1" if silent else self.stack.policy_url,
            policy_backoff_s=0.01,
            **overrides,
        )
        app = create_app(settings)
        url = await self.exits.enter_async_context(running(app, settings.port))
        api = await self.exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        return Replica(api=api, queue=app.state.work_queue)


def heldout(split: str, domain: str) -> EnvironmentSpec:
    """The weather task as a procedural environment of a held-out split (an evaluation entry)."""
    data = weather_spec(domain).model_dump(exclude={"id"})
    data |= {"split": split, "provenance": Provenance(source="procedural").model_dump()}
    return EnvironmentSpec.model_validate(data)


@asynccontextmanager
async def deployment(
    database_url: str, redis_url: str, envhost_settings: Settings, *extra: EnvironmentSpec
) -> AsyncIterator[Deployment]:
    own_redis = private_redis(redis_url)
    specs = (weather_spec(), *extra)
    async with AsyncExitStack() as exits:
        s = await exits.enter_async_context(stack(database_url, envhost_settings, *specs))
        silent = await exits.enter_async_context(silent_server())
        synth = create_synth(SynthSettings(database_url=database_url, redis_url=own_redis))
        synth_url = await exits.enter_async_context(running(synth, free_port()))
        redis = await exits.enter_async_context(aioredis.Redis.from_url(own_redis))
        yield Deployment(s, synth_url, silent, own_redis, redis, exits)


async def until(check: Callable[[], Any], what: str) -> None:
    """Wait (bounded) until ``check()`` (a value or an awaitable) is true."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def start_batch(replica: Replica, group_size: int) -> str:
    response = await replica.api.post(
        "/v1/batches",
        json={"env_ids": [weather_spec().id], "group_size": group_size,
              "policy": {"model": "solver"}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def read(replica: Replica, batch_id: str) -> BatchStatus:
    response = await replica.api.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return BatchStatus.model_validate(response.json())


async def finished(replica: Replica, batch_id: str) -> BatchStatus:
    async def ended() -> bool:
        return (await read(replica, batch_id)).state.terminal

    await until(ended, f"{batch_id} has ended")
    return await read(replica, batch_id)


async def published(redis: aioredis.Redis, batch_id: str) -> list[Trajectory]:
    """Every trajectory of ``batch_id`` on the stream, through a fresh consumer group."""
    consumer = StreamConsumer(
        redis, TRAJECTORY_STREAM, f"test-{uuid.uuid4().hex[:8]}", "reader", Trajectory
    )
    await consumer.ensure_group()
    found: list[Trajectory] = []
    while deliveries := await consumer.read(count=500, block_ms=100):
        found += [d.payload for d in deliveries if (d.payload.group_id or "").startswith(batch_id)]
        await consumer.ack(deliveries)
    return found


async def work_left(redis: aioredis.Redis) -> tuple[int, int]:
    """Units on the work stream, and units handed out but not acked."""
    summary = await redis.xpending(WORK_STREAM, WORK_GROUP)
    return int(await redis.xlen(WORK_STREAM)), int(summary["pending"])


async def test_a_batch_is_spread_over_replicas_and_read_and_cancelled_from_either(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with deployment(database_url, redis_url, envhost_settings) as d:
        a = await d.replica(silent=True, max_concurrent_episodes=2)
        b = await d.replica(silent=True, max_concurrent_episodes=2)
        batch_id = await start_batch(a, group_size=6)
        # Each replica takes only what it has room for: two each, two left queued.
        await until(lambda: a.queue.in_flight == 2 and b.queue.in_flight == 2, "both hold two")
        assert (await work_left(d.redis))[1] == 4
        seen_on_b = await read(b, batch_id)
        listed_on_b = (await b.api.get("/v1/batches")).json()
        cancelled = await b.api.post(f"/v1/batches/{batch_id}/cancel")
        seen_on_a = await read(a, batch_id)
        again_on_a = await a.api.post(f"/v1/batches/{batch_id}/cancel")
        await until(lambda: a.queue.in_flight == 0 and b.queue.in_flight == 0, "units dropped")
        await until(lambda: _no_work(d.redis), "every unit is acked or dropped")
        unknown = await b.api.get("/v1/batches/batch_nope")
        episodes_url = f"{d.stack.envhost_url}/v1/episodes"

        async def no_open_episodes() -> bool:
            return not (await d.stack.http.get(episodes_url)).json()

        await until(no_open_episodes, "every episode is closed")
    assert seen_on_b.state == "running"
    assert (seen_on_b.total, seen_on_b.done) == (6, 0)
    assert batch_id in [batch["id"] for batch in listed_on_b]
    assert cancelled.status_code == 200, cancelled.text
    status = BatchStatus.model_validate(cancelled.json())
    assert (status.state, status.cancelled, status.done) == ("cancelled", 6, 0)
    assert status.finished_at is not None
    assert seen_on_a.state == "cancelled"
    assert again_on_a.status_code == 409
    assert unknown.status_code == 404
    assert "process" not in unknown.json()["detail"]


async def _no_work(redis: aioredis.Redis) -> bool:
    return await work_left(redis) == (0, 0)


@pytest.mark.parametrize("max_deliveries", [3, 1], ids=["replayed", "past-the-limit"])
async def test_a_replica_stopped_mid_run_loses_nothing(
    database_url: str, redis_url: str, envhost_settings: Settings, max_deliveries: int
) -> None:
    """Replica A takes three episodes and stops without acking (as if killed); B finishes
    the batch: after the lease it takes A's episodes over and plays them again, or, past the
    delivery limit, records them as failed episodes. Every episode is counted once."""
    lease: dict[str, Any] = {"work_lease_s": 2.0, "work_max_deliveries": max_deliveries}
    async with deployment(database_url, redis_url, envhost_settings) as d:
        a = await d.replica(silent=True, max_concurrent_episodes=3, **lease)
        batch_id = await start_batch(a, group_size=5)
        await until(lambda: a.queue.in_flight == 3, "A holds three episodes")
        await a.queue.aclose(hand_back=False)
        assert await work_left(d.redis) == (5, 3)
        b = await d.replica(max_concurrent_episodes=8, **lease)
        status = await finished(b, batch_id)
        trajectories = await published(d.redis, batch_id)
        await until(lambda: _no_work(d.redis), "every unit is acked")
    assert status.state == "succeeded"
    assert (status.total, status.done, status.published) == (5, 5, 5)
    assert sorted(t.id for t in trajectories) == sorted(
        unit_trajectory_id(batch_id, unit) for unit in range(5)
    )
    assert {t.group_id for t in trajectories} == {f"{batch_id}:0"}
    failed = [t for t in trajectories if t.failure_reason is not None]
    if max_deliveries == 1:
        assert status.failed == len(failed) == 3
        assert status.summary.groups_done == 1
        for reason in [t.failure_reason for t in failed] + [
            f.reason for f in status.recent_failures
        ]:
            assert "handed out 2 times, more than work_max_deliveries (1)" in (reason or "")
    else:
        assert status.failed == len(failed) == 0
        assert status.summary.scored == 5
        assert status.summary.success_rate == 1.0


async def test_evaluations_and_teacher_runs_are_read_from_any_replica(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    entries = (heldout("heldout_entities", "travel"), heldout("heldout_compositions", "travel"))
    async with deployment(database_url, redis_url, envhost_settings, *entries) as d:
        a = await d.replica(max_concurrent_episodes=1)
        b = await d.replica(max_concurrent_episodes=1)
        evaluation = await a.api.post(
            "/v1/evaluations",
            json={"suite": "heldout-procedural", "limit": 5, "policy": {"model": "solver"}},
        )
        assert evaluation.status_code == 201, evaluation.text
        evaluation_id = evaluation.json()["id"]
        spec = weather_spec()
        teacher = await a.api.post(
            "/v1/teacher-runs",
            json={
                "tasks": [{"id": f"t{i}", "question": spec.task, "server": "env"}
                          for i in range(3)],
                "servers": [{"name": "env",
                             "url": f"{d.stack.envhost_url}/envs/{spec.id}/mcp"}],
                "policy": {"model": "solver"},
            },
        )  # fmt: skip
        assert teacher.status_code == 201, teacher.text
        teacher_id = teacher.json()["id"]

        async def both_ended() -> bool:
            scores = (await b.api.get(f"/v1/evaluations/{evaluation_id}")).json()
            run = (await b.api.get(f"/v1/teacher-runs/{teacher_id}")).json()
            return bool(scores["state"] == run["state"] == "succeeded")

        await until(both_ended, "the evaluation and the teacher run have ended")
        scores = (await b.api.get(f"/v1/evaluations/{evaluation_id}")).json()
        listed = (await b.api.get("/v1/evaluations")).json()
        kept = [
            (
                await b.api.get(
                    f"/v1/evaluations/{evaluation_id}/trajectories/{row['trajectory_id']}"
                )
            )
            for row in scores["entries"]
        ]
        run = (await b.api.get(f"/v1/teacher-runs/{teacher_id}")).json()
        first = (await b.api.get(f"/v1/teacher-runs/{teacher_id}/trajectories?limit=2")).json()
        rest = (
            await b.api.get(f"/v1/teacher-runs/{teacher_id}/trajectories?offset=2&limit=2")
        ).json()
    assert scores["done"] == scores["total"] == 2
    assert [c["category"] for c in scores["categories"]] == [
        "heldout_entities",
        "heldout_compositions",
    ]
    assert scores["overall"]["entries"] == 2
    assert scores["overall"]["success_rate"] == 1.0
    assert [e["id"] for e in listed] == [evaluation_id]
    assert listed[0]["entries"] == []
    assert [r.status_code for r in kept] == [200, 200]
    assert {r.json()["id"] for r in kept} == {e["trajectory_id"] for e in scores["entries"]}
    assert (run["done"], run["failed"], run["finish_reasons"]) == (3, 0, {"final_answer": 3})
    assert (first["total"], first["next_offset"], len(first["items"])) == (3, 2, 2)
    assert (rest["next_offset"], len(rest["items"])) == (None, 1)
    pages = first["items"] + rest["items"]
    assert sorted(t["metadata"]["task_id"] for t in pages) == ["t0", "t1", "t2"]
