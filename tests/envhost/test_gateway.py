"""The envhost gateway over real HTTP: two envhost replicas on one database, the gateway in
front, and MCP clients that know only the gateway's address."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from envhost_support import envhost, register, weather_spec
from http_support import running
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp
from test_mcp_clients import inspector, typescript

from astra.redis_server import free_port
from astra_envhost.gateway import GatewaySettings, create_gateway
from astra_envhost.gateway_routing import (
    Affinity,
    Replicas,
    Upstream,
    created_episode,
    episode_of,
    is_environment_mcp,
    owner_from_redirect,
)
from astra_envhost.settings import EnvhostSettings
from astra_proto import Episode, RewardBreakdown

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration]

Settings = Callable[..., EnvhostSettings]
FORECAST = ("get_forecast", {"city_id": "c-75"})
LIMIT_S = 60.0


@asynccontextmanager
async def serving(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port for the block; yields its URL."""
    async with running(app, free_port(), **config) as url:
        yield url


@asynccontextmanager
async def gateway(*replicas: str, **overrides: Any) -> AsyncIterator[tuple[str, Starlette]]:
    """A gateway in front of ``replicas``; yields its URL and app."""
    settings = GatewaySettings(replicas=list(replicas), **overrides)
    app = create_gateway(settings)
    async with serving(app, proxy_headers=False) as url:  # as astra-envhost-gateway runs it
        yield url, app


async def open_episode_ids(base: str, env_id: str) -> list[str]:
    """The episodes of ``env_id`` a replica holds open (asked of the replica itself)."""
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/v1/episodes")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json() if item["env_id"] == env_id]


async def lookups(client: Client, calls: int) -> list[int]:
    """The lookup counter the weather tool returns, over ``calls`` calls in one episode."""
    tool, arguments = FORECAST
    counts = []
    for _ in range(calls):
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result
        assert result.structured_content is not None
        counts.append(result.structured_content["lookups"])
    return counts


# Through the gateway, with real replicas.


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_environment_sessions_stay_on_the_replica_that_opened_them(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with (
        envhost(envhost_settings()) as first,
        envhost(envhost_settings()) as second,
        gateway(first, second) as (front, _),
    ):
        held: dict[str, list[str]] = {}
        async with AsyncExitStack() as clients, asyncio.timeout(LIMIT_S):
            # MCP clients until both replicas hold one's episode (the gateway spreads sessions)
            for _ in range(4):
                client = await clients.enter_async_context(
                    Client(f"{front}/envs/{spec.id}/mcp", mode=mode)
                )
                tools = await client.list_tools()
                assert sorted(t.name for t in tools.tools) == ["get_city_id", "get_forecast"]
                assert await lookups(client, 2) == [1, 2]  # one episode across calls
                held = {base: await open_episode_ids(base, spec.id) for base in (first, second)}
                if all(held.values()):
                    break
        assert all(held.values()), held
        # each client's DELETE reached the replica that holds its session: nothing is left open
        assert await open_episode_ids(first, spec.id) == []
        assert await open_episode_ids(second, spec.id) == []


async def test_episodes_created_at_the_gateway_are_served_through_it(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    replica = envhost_settings(trust_forwarded_headers=True)
    other = envhost_settings(trust_forwarded_headers=True)
    async with (
        envhost(replica) as first,
        envhost(other) as second,
        gateway(first, second) as (front, _),
        httpx.AsyncClient(base_url=front) as http,
        asyncio.timeout(LIMIT_S),
    ):
        episodes: list[Episode] = []
        held: dict[str, list[str]] = {}
        for _ in range(8):  # until both replicas hold one
            created = await http.post("/v1/episodes", json={"env_id": spec.id})
            assert created.status_code == 201, created.text
            episodes.append(Episode.model_validate(created.json()))
            held = {base: await open_episode_ids(base, spec.id) for base in (first, second)}
            if all(held.values()):
                break
        assert all(held.values()), held
        for episode in episodes:
            # the URL handed out names the gateway, not the replica
            assert episode.mcp_url == f"{front}/episodes/{episode.id}/mcp"
            async with Client(episode.mcp_url) as client:  # sessionless: the URL names it
                assert await lookups(client, 2) == [1, 2]
            async with Client(episode.mcp_url, mode="legacy") as client:
                assert await lookups(client, 1) == [3]  # the same episode, a new client
            # the weather task has one user turn: the replica holding it says so (others: 404)
            turn = await http.post(f"/v1/episodes/{episode.id}/turns")
            assert turn.status_code == 409, turn.text
            assert "last turn" in turn.json()["detail"]
            score = await http.post(
                f"/v1/episodes/{episode.id}/score", json={"final_answer": "21 °C"}
            )
            assert score.status_code == 200, score.text
            RewardBreakdown.model_validate(score.json())
            read = await http.get(f"/v1/episodes/{episode.id}")
            assert read.status_code == 200, read.text
            assert Episode.model_validate(read.json()).mcp_url == episode.mcp_url
            closed = await http.delete(f"/v1/episodes/{episode.id}")
            assert closed.status_code == 204, closed.text
        assert await open_episode_ids(first, spec.id) == []
        assert await open_episode_ids(second, spec.id) == []


async def test_an_episode_opened_on_a_replica_is_found_by_its_redirect(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    replica = envhost_settings(trust_forwarded_headers=True)
    other = envhost_settings(trust_forwarded_headers=True)
    async with (
        envhost(replica) as first,
        envhost(other) as second,
        httpx.AsyncClient() as http,
        asyncio.timeout(LIMIT_S),
    ):
        # opened on a replica directly (as rollout does): its own URL, no gateway in it
        created = await http.post(f"{second}/v1/episodes", json={"env_id": spec.id})
        episode = Episode.model_validate(created.json())
        assert episode.mcp_url == f"{second}/episodes/{episode.id}/mcp"
        # at once: the owner may not be in the database yet, the gateway asks every replica
        async with (
            gateway(first, second) as (front, app),
            Client(f"{front}/episodes/{episode.id}/mcp") as client,
        ):
            assert await lookups(client, 1) == [1]
        # once journaled, the other replica answers 307 to the owner; a fresh gateway follows it
        # (polls another server's database state over HTTP: there is no event to wait on)
        while (await http.get(f"{first}/v1/episodes/{episode.id}")).status_code != 307:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        refused = await http.post(f"{first}/episodes/{episode.id}/mcp", json={"id": 1})
        assert refused.status_code == 307
        assert refused.headers["location"] == f"{second}/episodes/{episode.id}/mcp"
        async with gateway(first, second) as (front, app):
            for _ in range(2):  # whichever replica round robin asks first
                async with Client(f"{front}/episodes/{episode.id}/mcp") as client:
                    await client.call_tool(*FORECAST)
            assert app.state.gateway.owners.get(episode.id) == Upstream.at(second)
            async with Client(episode.mcp_url) as client:  # every call went to one episode
                assert await lookups(client, 1) == [4]
            scored = await http.post(
                f"{front}/v1/episodes/{episode.id}/score", json={"final_answer": "21"}
            )
            assert scored.status_code == 200, scored.text


async def test_clients_nobody_here_wrote_work_through_the_gateway(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    replica = envhost_settings(trust_forwarded_headers=True)
    other = envhost_settings(trust_forwarded_headers=True)
    async with (
        envhost(replica) as first,
        envhost(other) as second,
        gateway(first, second) as (front, _),
        httpx.AsyncClient(base_url=front) as http,
    ):
        for sdk, mode in [("v1", "default"), ("v2", "legacy"), ("v2", "auto")]:
            report = await typescript(sdk, mode, f"{front}/envs/{spec.id}/mcp")
            assert [r["lookups"] for r in report["results"]] == [1, 2], (sdk, mode, report)
            assert report["sessionId"]
        created = await http.post("/v1/episodes", json={"env_id": spec.id})
        episode = Episode.model_validate(created.json())
        assert episode.mcp_url.startswith(front)
        report = await typescript("v2", "modern", episode.mcp_url)
        assert [r["lookups"] for r in report["results"]] == [1, 2]
        called = await inspector(
            episode.mcp_url, "--method", "tools/call", "--tool-name", FORECAST[0],
            "--tool-arg", "city_id=c-75",
        )  # fmt: skip
        assert called["structuredContent"]["lookups"] == 3
        # the session clients ended their sessions; only the REST episode is open
        open_now = await open_episode_ids(first, spec.id) + await open_episode_ids(second, spec.id)
        assert open_now == [episode.id]


async def test_without_affinity_a_stopped_replica_is_skipped(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as first, AsyncExitStack() as stopping:
        second = await stopping.enter_async_context(envhost(envhost_settings()))
        async with gateway(first, second) as (front, _), httpx.AsyncClient(base_url=front) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200
            assert health.json()["replicas_answering"] == 2
            await stopping.aclose()  # the second replica stops
            health = await http.get("/healthz")
            assert health.json()["replicas"] == 2
            assert health.json()["replicas_answering"] == 1
            for _ in range(4):  # round robin would have sent half of these to the stopped one
                created = await http.post("/v1/episodes", json={"env_id": spec.id})
                assert created.status_code == 201, created.text
            async with Client(f"{front}/envs/{spec.id}/mcp") as client:
                assert await lookups(client, 2) == [1, 2]
            assert len(await open_episode_ids(first, spec.id)) == 4


async def test_forwarded_headers_shape_mcp_urls_only_when_trusted(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    forwarded = {"x-forwarded-host": "example.org:8101", "x-forwarded-proto": "https"}

    async def mcp_url(base: str, headers: dict[str, str]) -> str:
        async with httpx.AsyncClient(base_url=base) as http:
            created = await http.post("/v1/episodes", json={"env_id": spec.id}, headers=headers)
        assert created.status_code == 201, created.text
        episode = Episode.model_validate(created.json())
        assert created.headers["location"] == f"/v1/episodes/{episode.id}"
        return episode.mcp_url.removesuffix(f"/episodes/{episode.id}/mcp")

    async with envhost(envhost_settings()) as untrusting:
        assert await mcp_url(untrusting, forwarded) == untrusting
    async with envhost(envhost_settings(trust_forwarded_headers=True)) as trusting:
        assert await mcp_url(trusting, forwarded) == "https://example.org:8101"
        assert await mcp_url(trusting, {}) == trusting  # rollout, inside: the replica's own
        not_a_host = {"x-forwarded-host": "evil.example/path?x", "x-forwarded-proto": "https"}
        assert await mcp_url(trusting, not_a_host) == trusting


async def test_an_unknown_session_gets_the_404_mcp_prescribes(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with (
        envhost(envhost_settings()) as first,
        gateway(first) as (front, _),
        httpx.AsyncClient(base_url=front) as http,
    ):
        response = await http.post(
            f"/envs/{spec.id}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"mcp-session-id": "never-issued", "accept": "application/json"},
        )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Session not found"


# The proxy itself, against a small upstream that shows what it received.


def probe_app(released: asyncio.Event, stream_closed: asyncio.Event) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"headers": dict(request.headers), "body": len(body)})

    async def events(_: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"data: first\n\n"
                await released.wait()
                yield b"data: second\n\n"
                await asyncio.Event().wait()  # a long-lived stream, until the client leaves
            finally:
                stream_closed.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/events", events, methods=["GET"]),
        ]
    )


async def test_event_streams_pass_through_as_they_arrive() -> None:
    released, stream_closed = asyncio.Event(), asyncio.Event()
    async with (
        serving(probe_app(released, stream_closed)) as upstream,
        gateway(upstream) as (front, _),
        httpx.AsyncClient() as http,
        asyncio.timeout(LIMIT_S),
    ):
        async with http.stream(
            "GET", f"{front}/events", headers={"accept": "text/event-stream"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == "data: first"  # before the upstream sent the rest
            released.set()
            assert await anext(lines) == ""
            assert await anext(lines) == "data: second"
        await stream_closed.wait()  # the client left: the upstream stream was closed too


async def test_forwarded_headers_and_the_body_cap() -> None:
    released, stream_closed = asyncio.Event(), asyncio.Event()
    async with (
        serving(probe_app(released, stream_closed)) as upstream,
        gateway(upstream, max_request_body_bytes=1024) as (front, _),
        httpx.AsyncClient(base_url=front) as http,
    ):
        response = await http.post(
            "/echo",
            content=b"x" * 100,
            headers={
                "authorization": "Bearer s3cret",
                "connection": "keep-alive, x-hop",
                "x-hop": "not for the upstream",
                "x-forwarded-for": "203.0.113.7",
            },
        )
        assert response.status_code == 200, response.text
        seen = response.json()
        too_large = await http.post("/echo", content=b"x" * 2048)
    headers = seen["headers"]
    assert seen["body"] == 100
    assert headers["host"] == upstream.removeprefix("http://")  # the replica's own name
    assert headers["x-forwarded-host"] == front.removeprefix("http://")
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["authorization"] == "Bearer s3cret"
    assert "x-hop" not in headers
    assert too_large.status_code == 413


# The routing pieces.


def test_paths_name_their_episode_or_environment() -> None:
    assert episode_of("/episodes/ep_1/mcp") == "ep_1"
    assert episode_of("/v1/episodes/ep_1") == "ep_1"
    assert episode_of("/v1/episodes/ep_1/score") == "ep_1"
    assert episode_of("/v1/episodes") is None
    assert episode_of("/episodes/ep_1/other") is None
    assert is_environment_mcp("/envs/env_1/mcp")
    assert not is_environment_mcp("/envs/env_1/mcp/extra")
    assert created_episode("POST", "/v1/episodes", 201, "/v1/episodes/ep_2") == "ep_2"
    assert created_episode("POST", "/v1/episodes", 422, None) is None


def test_a_redirect_names_the_owner_only_for_the_same_path() -> None:
    path = "/episodes/ep_1/mcp"
    assert owner_from_redirect(f"http://a1b2:8080{path}", path) == Upstream(
        "http://a1b2:8080", "a1b2:8080"
    )
    assert owner_from_redirect(f"https://h/prefix{path}", path) == Upstream("https://h/prefix", "h")
    assert owner_from_redirect("http://h/elsewhere", path) is None
    assert owner_from_redirect(f"ftp://h{path}", path) is None
    assert owner_from_redirect(None, path) is None


def test_affinity_forgets_the_least_recently_used() -> None:
    owners: Affinity[str, str] = Affinity(2)
    owners.put("a", "1")
    owners.put("b", "2")
    assert owners.get("a") == "1"
    owners.put("c", "1")
    assert owners.get("b") is None
    assert (owners.get("a"), owners.get("c"), len(owners)) == ("1", "1", 2)
    assert (owners.held_by("1"), owners.held_by("2")) == (2, 0)
    owners.put("a", "2")
    owners.forget("c")
    assert (owners.held_by("1"), owners.held_by("2")) == (0, 1)


async def test_replicas_rotate_and_a_name_resolves_to_its_addresses() -> None:
    fixed = Replicas(upstream="http://unused", fixed=["http://a:1", "http://b:1", "http://c:1"])
    firsts = [fixed.rotation()[0].url for _ in range(3)]
    assert sorted(firsts) == ["http://a:1", "http://b:1", "http://c:1"]
    named = Replicas(upstream="http://localhost:8080")
    await named.refresh()
    found = named.current()
    assert found, "localhost resolves to at least one address"
    assert {r.host for r in found} == {"localhost:8080"}  # the name stays the Host
    assert "http://127.0.0.1:8080" in {r.url for r in found}


def test_gateway_settings_read_a_replica_list() -> None:
    settings = GatewaySettings(replicas="http://a:8080, http://b:8080")
    assert settings.replicas == ["http://a:8080", "http://b:8080"]
    with pytest.raises(ValueError, match="not an http"):
        GatewaySettings(upstream="envhost:8080")
