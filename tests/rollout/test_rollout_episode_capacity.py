"""Creating an episode on an envhost at capacity: retried by the shared HTTP retry policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from envhost_support import envhost, register, weather_spec

from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, EpisodeRequest
from astra_rollout.envhost_client import CREATE_RETRIES, EnvhostClient, EnvhostError

pytestmark = pytest.mark.timeout(180)

Settings = Callable[..., EnvhostSettings]


@asynccontextmanager
async def one_episode_envhost(
    database_url: str, envhost_settings: Settings, create_max_wait_s: float = 8.0
) -> AsyncIterator[tuple[EnvhostClient, EnvironmentSpec]]:
    """A real envhost that holds at most one episode, and the rollout's client of it."""
    spec = weather_spec()
    await register(database_url, spec)
    async with (
        envhost(envhost_settings(max_episodes=1)) as url,
        httpx.AsyncClient(timeout=60) as http,
        httpx2.AsyncClient(timeout=60) as mcp_http,
    ):
        client = EnvhostClient(
            url,
            http=http,
            mcp_http=mcp_http,
            create_backoff_s=0.05,
            create_max_wait_s=create_max_wait_s,
        )
        yield client, spec


async def test_a_creation_waits_for_capacity_and_then_succeeds(
    database_url: str, envhost_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    async with one_episode_envhost(database_url, envhost_settings) as (client, spec):
        first = await client.create_episode(EpisodeRequest(env_id=spec.id, seed=1))
        waiting = asyncio.create_task(client.create_episode(EpisodeRequest(env_id=spec.id, seed=2)))
        deadline = time.monotonic() + 60
        while not any("creating an episode" in r.getMessage() for r in caplog.records):
            assert not waiting.done(), waiting.exception()
            assert time.monotonic() < deadline, "the full envhost's 503 was not retried"
            await asyncio.sleep(0.05)
        retry = next(
            r.getMessage() for r in caplog.records if "creating an episode" in r.getMessage()
        )
        assert "HTTP 503" in retry
        assert "retrying in 5.0 s" in retry  # envhost's Retry-After
        await client.close_episode(first)
        second = await asyncio.wait_for(waiting, timeout=60)
        assert second.id != first.id
        await client.close_episode(second)


async def test_a_creation_gives_up_with_envhosts_message_when_capacity_stays_taken(
    database_url: str, envhost_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    short_waits = one_episode_envhost(database_url, envhost_settings, create_max_wait_s=0.1)
    async with short_waits as (client, spec):
        first = await client.create_episode(EpisodeRequest(env_id=spec.id, seed=1))
        with pytest.raises(EnvhostError, match=r"envhost refused creating an episode \(HTTP 503\)"):
            await client.create_episode(EpisodeRequest(env_id=spec.id, seed=2))
        retries = [r for r in caplog.records if "creating an episode" in r.getMessage()]
        assert len(retries) == CREATE_RETRIES - 1
        await client.close_episode(first)


async def test_an_unknown_environment_is_refused_at_once(
    database_url: str, envhost_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    async with one_episode_envhost(database_url, envhost_settings) as (client, _):
        with pytest.raises(EnvhostError, match=r"HTTP 404") as raised:
            await client.create_episode(EpisodeRequest(env_id="env_" + "0" * 32, seed=1))
    assert raised.value.status == 404
    assert not [r for r in caplog.records if "creating an episode" in r.getMessage()]
