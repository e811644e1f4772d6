"""The envhost client against a real envhost over HTTP: every route it speaks, an error
answer, a full envhost, and an envhost that is not there."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envhost_support import envhost, register, weather_spec

from astra.redis_server import free_port
from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.envhost import EnvhostAtCapacity, EnvhostClient
from astra_envhost.bfcl import bfcl_environments
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    EnvironmentSpec,
    EpisodeRequest,
    ExecutionCall,
    ExecutionRequest,
    ScoreRequest,
)

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]


async def test_an_episode_from_creation_to_closing(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = EnvironmentSpec.model_validate(
        weather_spec().model_dump(exclude={"id"}) | {"followup_turns": ["And in Lyon?"]}
    )
    await register(database_url, spec)
    async with envhost(envhost_settings()) as url, EnvhostClient(url) as client:
        episode = await client.create_episode(EpisodeRequest(env_id=spec.id, seed=3))
        assert episode.env_id == spec.id
        assert episode.seed == 3
        assert episode.mcp_url == f"{url}/episodes/{episode.id}/mcp"
        listed = await client.list_episodes()
        assert [(e.id, e.env_id, e.turn, e.calls) for e in listed] == [(episode.id, spec.id, 0, 0)]
        assert (await client.advance_turn(episode.id)).turn == 1
        with pytest.raises(ServiceError, match="at its last turn") as last:
            await client.advance_turn(episode.id)
        assert last.value.status == 409
        reward = await client.score_episode(episode.id, ScoreRequest(final_answer="21"))
        assert (reward.n_subquestions, reward.n_calls) == (2, 0)
        read = await client.read_episode(episode.id)
        assert (read.turn, read.state, read.reward) == (1, "scored", reward)
        await client.close_episode(episode.id)
        assert await client.list_episodes() == []
        with pytest.raises(ServiceError) as closed:
            await client.close_episode(episode.id)
        assert closed.value.status == 404


async def test_an_unknown_environment_is_a_service_error_with_envhosts_reason(
    envhost_settings: Settings,
) -> None:
    async with envhost(envhost_settings()) as url, EnvhostClient(url) as client:
        with pytest.raises(ServiceError) as raised:
            await client.create_episode(EpisodeRequest(env_id="env_" + "0" * 32))
    assert raised.value.status == 404
    assert raised.value.detail  # envhost's own message, on one line
    assert str(raised.value) == (f"envhost: POST /v1/episodes answered 404: {raised.value.detail}")
    assert "env_" + "0" * 32 in raised.value.detail


async def test_a_full_envhost_answers_at_capacity_with_retry_after(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings(max_episodes=1)) as url, EnvhostClient(url) as client:
        first = await client.create_episode(EpisodeRequest(env_id=spec.id))
        with pytest.raises(EnvhostAtCapacity) as full:
            await client.create_episode(EpisodeRequest(env_id=spec.id))
        assert full.value.status == 503
        assert full.value.reply.headers["retry-after"] == "5"
        await client.close_episode(first.id)
        second = await client.create_episode(EpisodeRequest(env_id=spec.id))
        assert second.id != first.id


async def test_executions_run_the_calls_in_one_sandbox(envhost_settings: Settings) -> None:
    tools = weather_spec().tools
    request = ExecutionRequest(
        tools=tools,
        calls=[
            ExecutionCall(tool_name="get_city_id", arguments={"name": "Paris"}),
            ExecutionCall(tool_name="get_city_id", arguments={"name": "Atlantis"}),
        ],
    )
    async with envhost(envhost_settings()) as url, EnvhostClient(url) as client:
        result = await client.execute(request)
        with pytest.raises(ServiceError, match="tool names must be unique") as refused:
            await client.execute(request.model_copy(update={"tools": [*tools, tools[0]]}))
    assert [o.output for o in result.outcomes] == [{"city_id": "c-75"}, None]
    assert "unknown city" in (result.outcomes[1].error or "")
    assert refused.value.status == 422


async def test_bfcl_specs_page_by_page(envhost_settings: Settings) -> None:
    async with envhost(envhost_settings()) as url, EnvhostClient(url) as client:
        page = await client.bfcl_page(categories=["base"], limit=3, offset=1, page_size=1)
        every = await client.bfcl_environments(categories=["base", "miss_func"], limit=21)
        named = await client.bfcl_environments(entries=["multi_turn_base_1"])
        with pytest.raises(ServiceError) as unknown:
            await client.bfcl_page(categories=["irrelevance"])
    expected = bfcl_environments(["base", "miss_func"], 21, None)
    assert (page.total, page.offset, page.items) == (3, 1, expected[1:2])
    assert every == expected  # 42 specs: three pages
    assert [s.id for s in named] == [expected[1].id]
    assert unknown.value.status == 422
    assert "irrelevance" in unknown.value.detail


async def test_an_envhost_that_is_not_there_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with EnvhostClient(url) as client:
        with pytest.raises(ServiceUnreachable, match=f"cannot reach envhost at {url}"):
            await client.create_episode(EpisodeRequest(env_id="env_x"))
        with pytest.raises(ServiceUnreachable, match=r"GET /v1/episodes"):
            await client.list_episodes()
