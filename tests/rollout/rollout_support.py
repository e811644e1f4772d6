"""rollout test support: a real envhost with test environments and the scripted policy server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import redis.asyncio as aioredis
from envhost_support import envhost, register, weather_spec
from http_support import running
from rollout_stub_policy import ScriptedPolicy, stub_app

from astra.redis_server import free_port
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec
from astra_rollout.envhost_client import EnvhostClient
from astra_rollout.policy import PolicyClient
from astra_rollout.run_store import RunStore
from astra_rollout.work_queue import WorkQueue


def multi_turn_spec() -> EnvironmentSpec:
    """The weather task with two further user turns."""
    base = weather_spec().model_dump(exclude={"id"})
    return EnvironmentSpec.model_validate(
        {**base, "followup_turns": ["And in Lyon?", "Thanks, that is all."]}
    )


@dataclass
class Stack:
    """A running envhost and stub policy, with the clients the rollout uses on them."""

    envhost_url: str
    policy_url: str
    stub: ScriptedPolicy
    http: httpx.AsyncClient
    episodes: EnvhostClient

    def policy(self, script: str, **overrides: Any) -> PolicyClient:
        values: dict[str, Any] = {"retries": 3, "backoff_s": 0.01, "timeout_s": 30.0}
        return PolicyClient(
            http=self.http, base_url=self.policy_url, model=script, **(values | overrides)
        )


@asynccontextmanager
async def stack(
    database_url: str,
    envhost_settings: Callable[..., EnvhostSettings],
    *specs: EnvironmentSpec,
) -> AsyncIterator[Stack]:
    """envhost serving ``specs`` (the weather task when none), and the scripted policy."""
    await register(database_url, *(specs or (weather_spec(),)))
    stub = ScriptedPolicy()
    async with (
        envhost(envhost_settings(tool_timeout_s=10.0)) as envhost_url,
        running(stub_app(stub), free_port()) as stub_url,
        httpx.AsyncClient(follow_redirects=True, timeout=60) as http,
        httpx2.AsyncClient(timeout=60) as mcp_http,
    ):
        yield Stack(
            envhost_url=envhost_url,
            policy_url=f"{stub_url}/v1",
            stub=stub,
            http=http,
            episodes=EnvhostClient(envhost_url, http=http, mcp_http=mcp_http),
        )


@asynccontextmanager
async def work_queue(
    redis_url: str, *, capacity: int = 8, lease_s: float = 60.0, max_deliveries: int = 3
) -> AsyncIterator[WorkQueue]:
    """A replica's run store and work queue on ``redis_url`` (register runners on it, then
    ``start()``); stopped and disconnected at the end."""
    client = aioredis.Redis.from_url(redis_url)
    store = RunStore(client, retention_s=3600.0)
    queue = WorkQueue(
        client, store, capacity=capacity, lease_s=lease_s, max_deliveries=max_deliveries
    )
    try:
        yield queue
    finally:
        await queue.aclose()
        await client.aclose()
