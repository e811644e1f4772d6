"""envhost stays bounded under clients that misbehave: capped sandbox workers (idle ones
evicted first, a clear error when all are busy) and abandoned MCP clients reclaimed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from envhost_support import descendants, register, slow_spec, weather_spec
from fastapi import FastAPI
from http_support import running
from mcp import Client

from astra_envhost.app import create_app
from astra_envhost.settings import EnvhostSettings
from astra_proto import Episode

pytestmark = pytest.mark.timeout(180)

Settings = Callable[..., EnvhostSettings]


@asynccontextmanager
async def envhost_app(settings: EnvhostSettings) -> AsyncIterator[tuple[FastAPI, str]]:
    app = create_app(settings)
    async with running(app, settings.port) as url:
        yield app, url


async def create_episode(base: str, env_id: str, **body: Any) -> Episode:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/episodes", json={"env_id": env_id, **body})
    assert response.status_code == 201, response.text
    return Episode.model_validate(response.json())


async def call(url: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    """(is_error, structured content or error text) of one call on a fresh client."""
    async with Client(url) as client:
        result = await client.call_tool(tool, arguments)
    if result.is_error:
        return True, result.content[0].text  # type: ignore[union-attr]
    return False, result.structured_content


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as name:
            return name.read().strip()
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def sandbox_processes() -> int:
    """Live sandboxes below this test process (the envhost runs in it): outermost bwraps."""
    return sum(
        1
        for pid in descendants(os.getpid())
        if comm(pid) == "bwrap" and comm(parent(pid)) != "bwrap"
    )


async def test_idle_sandbox_workers_are_evicted_at_the_cap_and_say_so(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost_app(envhost_settings(max_sandbox_workers=1)) as (app, base):
        first = await create_episode(base, spec.id)
        second = await create_episode(base, spec.id)
        forecast = ("get_forecast", {"city_id": "c-75"})

        assert await call(first.mcp_url, *forecast) == (False, {**FORECAST, "lookups": 1})
        assert await call(second.mcp_url, *forecast) == (False, {**FORECAST, "lookups": 1})
        assert app.state.sandbox_workers.live == 1  # the first episode's idle worker made room
        assert sandbox_processes() <= 1

        failed, text = await call(first.mcp_url, *forecast)
        assert failed
        assert "stopped to make room for other episodes" in text
        assert "1 live sandboxes is this envhost's maximum" in text
        assert "tool state was reset" in text
        assert await call(first.mcp_url, *forecast) == (False, {**FORECAST, "lookups": 1})
        assert app.state.sandbox_workers.live == 1
        assert sandbox_processes() <= 1


FORECAST = {"temperature_c": 21, "condition": "sunny", "days": 1}


async def test_a_new_worker_is_refused_clearly_while_every_worker_is_busy(
    database_url: str, envhost_settings: Settings
) -> None:
    slow, weather = slow_spec(), weather_spec()
    await register(database_url, slow, weather)
    # the spinning call must still hold its worker when the second episode asks for one
    settings = envhost_settings(max_sandbox_workers=1, tool_timeout_s=15.0, tool_cpu_s=60)
    async with envhost_app(settings) as (app, base):
        spinning = await create_episode(base, slow.id)
        waiting = await create_episode(base, weather.id)
        spin = asyncio.create_task(call(spinning.mcp_url, "spin", {"seconds": 100}))
        async with asyncio.timeout(60):
            # the spinning call holds the only slot; no event to wait on in the server's state
            while app.state.sandbox_workers.live == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        failed, text = await call(waiting.mcp_url, "get_city_id", {"name": "Paris"})
        assert failed
        assert "all 1 sandbox workers of this envhost are running tool calls" in text
        assert "ASTRA_ENVHOST_MAX_SANDBOX_WORKERS" in text
        spun, spin_text = await spin
        assert spun
        assert "timed out" in spin_text
        # once the busy call is over, its worker is no longer in a call and makes room
        assert await call(waiting.mcp_url, "get_city_id", {"name": "Paris"}) == (
            False,
            {"city_id": "c-75"},
        )


async def test_abandoned_clients_are_reclaimed_sooner_than_rest_episodes(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    settings = envhost_settings(client_idle_timeout_s=3.0, episode_idle_timeout_s=600.0)
    async with envhost_app(settings) as (app, base):
        rest = await create_episode(base, spec.id)
        async with Client(f"{base}/envs/{spec.id}/mcp", mode="legacy") as client:
            await client.call_tool("get_city_id", {"name": "Paris"})
            (opened,) = [e for e in app.state.episodes.live if e != rest.id]
            async with asyncio.timeout(60):
                while opened in app.state.episodes.live:  # noqa: ASYNC110 - polls the reaper
                    await asyncio.sleep(0.05)
        assert rest.id in app.state.episodes.live
        async with httpx.AsyncClient(base_url=base) as http:
            expired = (await http.get(f"/v1/episodes/{opened}")).json()
        assert expired["state"] == "expired"


async def test_a_session_whose_episode_was_closed_says_so_instead_of_starting_over(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost_app(envhost_settings()) as (app, base):
        async with Client(f"{base}/envs/{spec.id}/mcp", mode="legacy") as client:
            await client.call_tool("get_forecast", {"city_id": "c-75"})
            (opened,) = app.state.episodes.live
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.delete(f"/v1/episodes/{opened}")).status_code == 204
            after = await client.call_tool("get_forecast", {"city_id": "c-75"})
        assert after.is_error
        assert f"episode {opened!r} was closed or expired" in after.content[0].text  # type: ignore[union-attr]
        assert app.state.episodes.live == {}
