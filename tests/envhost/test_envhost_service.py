"""envhost end to end over real HTTP: REST episodes, MCP in both protocol modes, scoring."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import httpx2
import pytest
from envhost_support import envhost, register, slow_spec, weather_spec
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from astra_envhost.settings import EnvhostSettings
from astra_proto import Episode, RewardBreakdown

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]
MODES = ["auto", "legacy"]
MCP_ACCEPT = {"accept": "application/json, text/event-stream"}


async def create_episode(base: str, env_id: str, **body: Any) -> Episode:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/episodes", json={"env_id": env_id, **body})
    assert response.status_code == 201, response.text
    return Episode.model_validate(response.json())


async def read_episode(base: str, episode_id: str) -> Episode:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get(f"/v1/episodes/{episode_id}")
    assert response.status_code == 200, response.text
    return Episode.model_validate(response.json())


@pytest.mark.parametrize("mode", MODES)
async def test_rest_episode_over_mcp_solves_and_scores(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        episode = await create_episode(base, spec.id)
        assert episode.mcp_url == f"{base}/episodes/{episode.id}/mcp"
        async with Client(episode.mcp_url, mode=mode) as client:
            tools = await client.list_tools()
            assert sorted(t.name for t in tools.tools) == ["get_city_id", "get_forecast"]
            city = await client.call_tool("get_city_id", {"name": "Paris"})
            assert not city.is_error
            assert city.structured_content == {"city_id": "c-75"}
            forecast = await client.call_tool("get_forecast", {"city_id": "c-75"})
            assert forecast.structured_content is not None
            assert forecast.structured_content["temperature_c"] == 21

        async with httpx.AsyncClient(base_url=base) as http:
            score = await http.post(
                f"/v1/episodes/{episode.id}/score", json={"final_answer": "It will be 21 °C."}
            )
        assert score.status_code == 200, score.text
        reward = RewardBreakdown.model_validate(score.json())
        assert (reward.n_subquestions, reward.n_solved, reward.n_calls) == (2, 2, 2)
        assert reward.f1 == pytest.approx(1.0, abs=1e-5)
        assert reward.final_answer_correct is True

        log = await read_episode(base, episode.id)
        assert [c.tool_name for c in log.calls] == ["get_city_id", "get_forecast"]
        assert [c.seq for c in log.calls] == [0, 1]
        assert log.state == "scored"


async def test_reward_counts_every_call_and_zero_when_nothing_solved(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        idle = await create_episode(base, spec.id)
        busy = await create_episode(base, spec.id)
        async with Client(busy.mcp_url) as client:
            await client.call_tool("get_city_id", {"name": "Lyon"})  # wrong city: not solved
            await client.call_tool("get_city_id", {"name": "Paris"})  # solves q1
            await client.call_tool("get_city_id", {"name": "Atlantis"})  # tool error
        async with httpx.AsyncClient(base_url=base) as http:
            nothing = (await http.post(f"/v1/episodes/{idle.id}/score", json={})).json()
            partial = (await http.post(f"/v1/episodes/{busy.id}/score", json={})).json()
    assert nothing["f1"] == 0.0
    assert nothing["n_solved"] == 0
    assert partial["n_calls"] == 3
    assert partial["solved_ids"] == ["q1"]
    assert partial["recall"] == 0.5
    assert partial["precision"] == pytest.approx(1 / 3, rel=1e-4)


@pytest.mark.parametrize("mode", MODES)
async def test_every_env_client_gets_its_own_episode(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    url_of = f"/envs/{spec.id}/mcp"
    async with envhost(envhost_settings()) as base:
        async with (
            Client(base + url_of, mode=mode) as first,
            Client(
                base + url_of,
                mode=mode,
            ) as second,
        ):
            one = await first.call_tool("get_forecast", {"city_id": "c-75"})
            two = await first.call_tool("get_forecast", {"city_id": "c-75"})
            other = await second.call_tool("get_forecast", {"city_id": "c-69"})
        # state lives in each client's own episode: the second client's counter starts afresh
        assert one.structured_content is not None
        assert two.structured_content is not None
        assert other.structured_content is not None
        assert (one.structured_content["lookups"], two.structured_content["lookups"]) == (1, 2)
        assert other.structured_content["lookups"] == 1
        async with httpx.AsyncClient(base_url=base) as http:
            listing = (await http.get("/v1/episodes")).json()
        calls = sorted(item["calls"] for item in listing if item["env_id"] == spec.id)
        assert calls == []  # ending a session closes its episode (auto falls back to sessions)


async def test_arguments_are_validated_and_tool_errors_do_not_end_the_episode(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        episode = await create_episode(base, spec.id)
        async with Client(episode.mcp_url) as client:
            missing = await client.call_tool("get_forecast", {})
            wrong = await client.call_tool("get_forecast", {"city_id": "c-75", "days": 0})
            failing = await client.call_tool("get_forecast", {"city_id": "nowhere"})
            unknown = await client.call_tool("launch_rocket", {})
            fine = await client.call_tool("get_forecast", {"city_id": "c-75"})
        assert missing.is_error
        assert '"city_id" is a required property' in missing.content[0].text  # type: ignore[union-attr]
        assert wrong.is_error
        assert "days: 0 is less than the minimum of 1" in wrong.content[0].text  # type: ignore[union-attr]
        assert failing.is_error
        assert "KeyError" in failing.content[0].text  # type: ignore[union-attr]
        assert unknown.is_error
        assert "unknown tool 'launch_rocket'" in unknown.content[0].text  # type: ignore[union-attr]
        assert not fine.is_error
        log = await read_episode(base, episode.id)
        assert [c.error is None for c in log.calls] == [False, False, False, False, True]


async def test_timeout_is_a_tool_error_and_the_episode_goes_on(
    database_url: str, envhost_settings: Settings
) -> None:
    slow, weather = slow_spec(), weather_spec()
    await register(database_url, slow, weather)
    async with envhost(envhost_settings(tool_timeout_s=1.0)) as base:
        episode = await create_episode(
            base, slow.id, distractors=[{"env_id": weather.id, "tool_name": "get_city_id"}]
        )
        async with Client(episode.mcp_url) as client:
            stuck = await client.call_tool("spin", {"seconds": 100})
            after = await client.call_tool("get_city_id", {"name": "Lyon"})
        assert stuck.is_error
        assert "timed out" in stuck.content[0].text  # type: ignore[union-attr]
        assert after.structured_content == {"city_id": "c-69"}
        log = await read_episode(base, episode.id)
        assert [c.distractor for c in log.calls] == [False, True]


async def test_rest_errors(database_url: str, envhost_settings: Settings) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with (
        envhost(envhost_settings(max_episodes=1)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        unknown = await http.post("/v1/episodes", json={"env_id": "env_missing"})
        assert unknown.status_code == 404
        assert "env_missing" in unknown.json()["detail"]
        extra = await http.post("/v1/episodes", json={"env_id": spec.id, "colour": "red"})
        assert extra.status_code == 422
        bad_distractor = await http.post(
            "/v1/episodes",
            json={"env_id": spec.id, "distractors": [{"env_id": spec.id, "tool_name": "x"}]},
        )
        assert bad_distractor.status_code == 422
        assert "not a synthetic tool" in bad_distractor.json()["detail"]
        first = await http.post("/v1/episodes", json={"env_id": spec.id})
        assert first.status_code == 201
        full = await http.post("/v1/episodes", json={"env_id": spec.id})
        assert full.status_code == 503
        assert "maximum" in full.json()["detail"]
        missing = await http.get("/v1/episodes/ep_nope")
        assert missing.status_code == 404
        episode_id = first.json()["id"]
        assert (await http.delete(f"/v1/episodes/{episode_id}")).status_code == 204
        closed = await http.post(f"/v1/episodes/{episode_id}/score", json={})
        assert closed.status_code == 404
        assert (await http.post("/v1/episodes", json={"env_id": spec.id})).status_code == 201


async def test_unknown_environment_over_mcp(database_url: str, envhost_settings: Settings) -> None:
    async with envhost(envhost_settings()) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/envs/env_missing/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 404
    assert "env_missing" in response.json()["detail"]


async def test_idle_episodes_expire(database_url: str, envhost_settings: Settings) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings(episode_idle_timeout_s=0.3)) as base:
        episode = await create_episode(base, spec.id)
        async with asyncio.timeout(10):
            # polls another server's state over HTTP: there is no event to wait on
            while (await read_episode(base, episode.id)).state == "open":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert (await read_episode(base, episode.id)).state == "expired"


async def test_hot_loaded_environment_is_served(
    database_url: str, envhost_settings: Settings
) -> None:
    async with envhost(envhost_settings()) as base:
        spec = weather_spec(domain="registered-later")
        await register(database_url, spec)
        async with Client(f"{base}/envs/{spec.id}/mcp") as client:
            result = await client.call_tool("get_city_id", {"name": "Paris"})
        assert result.structured_content == {"city_id": "c-75"}


async def test_bearer_token_protects_rest_writes_and_mcp(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings(api_token="s3cret")) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            denied = await http.post("/v1/episodes", json={"env_id": spec.id})
            assert denied.status_code == 401
            allowed = await http.post(
                "/v1/episodes",
                json={"env_id": spec.id},
                headers={"Authorization": "Bearer s3cret"},
            )
            assert allowed.status_code == 201
            assert (await http.get("/healthz")).status_code == 200
            anonymous = await http.post(
                f"/envs/{spec.id}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"accept": "application/json, text/event-stream"},
            )
            assert anonymous.status_code == 401
        headers = {"Authorization": "Bearer s3cret"}
        async with (
            httpx2.AsyncClient(headers=headers) as http_client,
            Client(
                streamable_http_client(f"{base}/envs/{spec.id}/mcp", http_client=http_client)
            ) as client,
        ):
            result = await client.call_tool("get_city_id", {"name": "Paris"})
        assert result.structured_content == {"city_id": "c-75"}


async def test_two_replicas_each_hold_their_own_episodes(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as first, envhost(envhost_settings()) as second:
        on_first = await create_episode(first, spec.id)
        on_second = await create_episode(second, spec.id)
        assert on_first.mcp_url.startswith(first)
        assert on_second.mcp_url.startswith(second)
        for episode in (on_first, on_second):
            async with Client(episode.mcp_url) as client:
                result = await client.call_tool("get_city_id", {"name": "Paris"})
            assert result.structured_content == {"city_id": "c-75"}
        # the other replica knows who holds an episode once it is journaled, and says so
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=second) as http:
            moved = await http.get(f"/v1/episodes/{on_first.id}")
            assert moved.status_code == 307
            assert moved.headers["location"] == f"{first}/v1/episodes/{on_first.id}"
        async with httpx.AsyncClient(base_url=second) as http:
            wrong = await http.post(
                f"/episodes/{on_first.id}/mcp", json={"id": 7}, headers=MCP_ACCEPT
            )
        # at connect: 307 to the URL that serves it, which the JSON-RPC error names too
        assert wrong.status_code == 307
        assert wrong.headers["location"] == f"{first}/episodes/{on_first.id}/mcp"
        error = wrong.json()
        assert error["id"] == 7
        assert f"{first}/episodes/{on_first.id}/mcp" in error["error"]["message"]
        # the Python SDK follows no redirect off its origin: it fails, naming the URL
        with pytest.raises(BaseException) as failure:  # noqa: PT011 - inspected below
            async with Client(f"{second}/episodes/{on_first.id}/mcp") as client:
                await client.list_tools()
        messages = [str(leaf) for leaf in leaves(failure.value)]
        assert any(f"{first}/episodes/{on_first.id}/mcp" in m for m in messages), messages


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_episode_url_fails_at_connect(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    async with envhost(envhost_settings()) as base:
        with pytest.raises(BaseException) as failure:  # noqa: PT011 - inspected below
            async with Client(f"{base}/episodes/ep_nope/mcp", mode=mode):
                pass
        assert any(isinstance(leaf, MCPError) for leaf in leaves(failure.value)), failure.value
        async with httpx.AsyncClient(base_url=base) as http:
            response = await http.post("/episodes/ep_nope/mcp", json={}, headers=MCP_ACCEPT)
        assert response.status_code == 404
        assert "ep_nope" in response.json()["detail"]


@pytest.mark.parametrize("mode", MODES)
async def test_argument_errors_speak_json(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        episode = await create_episode(base, spec.id)
        async with Client(episode.mcp_url, mode=mode) as client:
            nothing = await client.call_tool("get_city_id", {"name": None})
            flag = await client.call_tool("get_forecast", {"city_id": True})
        texts = [r.content[0].text for r in (nothing, flag)]  # type: ignore[union-attr]
        assert texts == [
            'invalid arguments for get_city_id: name: null is not of type "string"',
            'invalid arguments for get_forecast: city_id: true is not of type "string"',
        ]


async def test_the_server_declares_what_it_serves_and_offers_task_and_description(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        episode = await create_episode(base, spec.id)
        for url in (episode.mcp_url, f"{base}/envs/{spec.id}/mcp"):
            for mode in MODES:
                async with Client(url, mode=mode) as client:
                    declared = client.server_capabilities.model_dump(exclude_none=True)
                    prompts = await client.list_prompts()
                    prompt = await client.get_prompt("task")
                    resources = await client.list_resources()
                    read = await client.read_resource(str(resources.resources[0].uri))
                    with pytest.raises(MCPError, match="unknown prompt 'play'"):
                        await client.get_prompt("play")
                assert set(declared) == {"tools", "prompts", "resources"}, (url, mode, declared)
                assert declared["resources"].get("subscribe") in (None, False)
                assert [p.name for p in prompts.prompts] == ["task"]
                assert [m.content.text for m in prompt.messages] == [spec.task]  # type: ignore[union-attr]
                assert str(resources.resources[0].uri) == f"astra://environments/{spec.id}"
                text = read.contents[0].text  # type: ignore[union-attr]
                assert spec.task in text
                assert "`get_city_id`: Look up a city's id." in text


async def test_a_sessionless_request_on_an_environment_url_is_told_where_to_go(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base, httpx.AsyncClient(base_url=base) as http:
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "get_city_id",
                "arguments": {"name": "Paris"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
        headers = {
            **MCP_ACCEPT,
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "get_city_id",
        }
        response = await http.post(f"/envs/{spec.id}/mcp", json=body, headers=headers)
        listing = (await http.get("/v1/episodes")).json()
    assert response.status_code == 400
    reply = response.json()
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32022
    assert "2026-07-28" not in reply["error"]["data"]["supported"]
    assert "2025-11-25" in reply["error"]["data"]["supported"]
    assert "/episodes/{id}/mcp" in reply["error"]["message"]
    assert listing == []  # refused before anything was opened


async def test_a_session_on_an_environment_url_learns_its_episode_id(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base, httpx.AsyncClient(base_url=base) as http:
        url = f"/envs/{spec.id}/mcp"
        hello = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        opened = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
            headers=MCP_ACCEPT,
        )
        assert opened.status_code == 200, opened.text
        assert "x-astra-episode-id" not in opened.headers  # no episode before a tool call
        session = {**MCP_ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"]}
        call = {"name": "get_city_id", "arguments": {"name": "Paris"}}
        called = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            headers={**session, "mcp-protocol-version": "2025-11-25"},
        )
        assert called.status_code == 200, called.text
        (open_episode,) = (await http.get("/v1/episodes")).json()
        assert called.headers["x-astra-episode-id"] == open_episode["id"]
        ended = await http.delete(url, headers={**session, "mcp-protocol-version": "2025-11-25"})
        assert ended.status_code == 200
        assert (await http.get("/v1/episodes")).json() == []
