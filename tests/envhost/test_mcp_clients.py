"""MCP clients nobody here wrote, against a real envhost over real HTTP.

The TypeScript SDK (v1, and v2 in each negotiation mode) and the MCP Inspector CLI come from
npm, pinned in tests/mcp_clients (installed by ``make install``); the Python SDK from the venv.
Each keeps its episode across calls (the weather tool counts its lookups) and leaves no episode
open beyond what it used.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import envhost, register, weather_spec
from mcp import Client

from astra_envhost.settings import EnvhostSettings
from astra_proto import Episode

pytestmark = [pytest.mark.timeout(300), pytest.mark.integration]

Settings = Callable[..., EnvhostSettings]
CLIENTS = Path(__file__).parents[1] / "mcp_clients"
FORECAST = ("get_forecast", {"city_id": "c-75"})
COMMAND_LIMIT_S = 120.0


def node() -> str:
    """The node executable, with the pinned npm clients installed next to it."""
    executable = shutil.which("node")
    assert executable is not None, "node is not installed (make install needs node and npm)"
    assert (CLIENTS / "node_modules").is_dir(), "run `make install`: tests/mcp_clients needs npm ci"
    return executable


async def run_node(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        node(),
        *args,
        cwd=CLIENTS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(COMMAND_LIMIT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def typescript(sdk: str, mode: str, url: str, calls: int = 2, end: bool = True) -> Any:
    """Run tests/mcp_clients/play.mjs; its JSON report."""
    tool, arguments = FORECAST
    args = ["play.mjs", sdk, mode, url, tool, json.dumps(arguments), str(calls)]
    code, out, err = await run_node(*args, *(["end"] if end else []))
    lines = out.strip().splitlines()
    assert lines, f"no report (exit {code}): {err[-2000:]}"
    report = json.loads(lines[-1])
    assert (code == 0) == ("failure" not in report), (code, report, err[-2000:])
    return report


async def inspector(url: str, *args: str) -> Any:
    """The MCP Inspector's CLI (``--transport http``); its JSON output."""
    cli = "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"
    code, out, err = await run_node(cli, "--cli", url, "--transport", "http", *args)
    assert code == 0, f"inspector failed ({code}): {out[-2000:]} {err[-2000:]}"
    return json.loads(out[out.index("{") :])


async def open_episodes(base: str, env_id: str) -> list[dict[str, Any]]:
    """Summaries of the episodes of ``env_id`` open on the envhost (``GET /v1/episodes``)."""
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/v1/episodes")
    assert response.status_code == 200, response.text
    return [item for item in response.json() if item["env_id"] == env_id]


async def wait_until_none_open(base: str, env_id: str, limit_s: float = 120.0) -> None:
    async with asyncio.timeout(limit_s):
        # polls another server's state over HTTP: there is no event to wait on
        while await open_episodes(base, env_id):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


def lookups(report: Any) -> list[int]:
    return [result["lookups"] for result in report["results"]]


@pytest.mark.parametrize(
    ("sdk", "mode"),
    [("v1", "default"), ("v2", "default"), ("v2", "auto"), ("v2", "legacy")],
)
async def test_typescript_clients_keep_their_episode_on_the_environment_url(
    sdk: str, mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        report = await typescript(sdk, mode, f"{base}/envs/{spec.id}/mcp")
        assert lookups(report) == [1, 2]  # both calls in one episode
        assert report["sessionId"]
        assert sorted(report["tools"]) == ["get_city_id", "get_forecast"]
        assert report["prompt"] == spec.task
        assert report["resource"].startswith(f"# Environment {spec.id}")
        assert await open_episodes(base, spec.id) == []  # the client ended its session

        # the same client again, leaving without DELETE: its one episode waits for reclaim
        await typescript(sdk, mode, f"{base}/envs/{spec.id}/mcp", end=False)
        (left,) = await open_episodes(base, spec.id)
        assert left["calls"] == 2


async def test_a_sessionless_typescript_client_is_pointed_at_episode_urls(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        refused = await typescript("v2", "modern", f"{base}/envs/{spec.id}/mcp")
        # /envs/{id}/mcp advertises only session-era versions: a pinned client says so at connect
        assert "Unsupported protocol version" in refused["failure"], refused
        assert await open_episodes(base, spec.id) == []

        async with httpx.AsyncClient(base_url=base) as http:
            created = await http.post("/v1/episodes", json={"env_id": spec.id})
        episode = Episode.model_validate(created.json())
        report = await typescript("v2", "modern", episode.mcp_url)
        assert lookups(report) == [1, 2]
        assert report["sessionId"] is None  # sessionless: the URL names the episode
        again = await typescript("v2", "modern", episode.mcp_url, calls=1)
        assert lookups(again) == [3]  # a new client on the same URL, the same episode
        assert [e["id"] for e in await open_episodes(base, spec.id)] == [episode.id]


async def test_the_inspector_cli_opens_an_episode_only_to_call_and_it_is_reclaimed(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    # long enough that the abandoned episode is still open when the Inspector has exited
    async with envhost(envhost_settings(client_idle_timeout_s=15.0)) as base:
        env_url = f"{base}/envs/{spec.id}/mcp"
        listed = await inspector(env_url, "--method", "tools/list")
        assert sorted(t["name"] for t in listed["tools"]) == ["get_city_id", "get_forecast"]
        prompts = await inspector(env_url, "--method", "prompts/list")
        assert [p["name"] for p in prompts["prompts"]] == ["task"]
        assert await open_episodes(base, spec.id) == []  # nothing was called: nothing opened

        called = await inspector(
            env_url, "--method", "tools/call", "--tool-name", "get_forecast",
            "--tool-arg", "city_id=c-75",
        )  # fmt: skip
        assert called["structuredContent"]["lookups"] == 1
        (abandoned,) = await open_episodes(base, spec.id)  # the Inspector sends no DELETE
        await wait_until_none_open(base, spec.id)  # ... so client_idle_timeout_s reclaims it
        async with httpx.AsyncClient(base_url=base) as http:
            final = (await http.get(f"/v1/episodes/{abandoned['id']}")).json()
        assert final["state"] == "expired"

        # Across separate Inspector runs, the episode URL is what names the state.
        async with httpx.AsyncClient(base_url=base) as http:
            created = await http.post("/v1/episodes", json={"env_id": spec.id})
        episode_url = created.json()["mcp_url"]
        for expected in (1, 2):
            result = await inspector(
                episode_url, "--method", "tools/call", "--tool-name", "get_forecast",
                "--tool-arg", "city_id=c-75",
            )  # fmt: skip
            assert result["structuredContent"]["lookups"] == expected


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_python_clients_open_an_episode_at_their_first_call_and_end_it(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost(envhost_settings()) as base:
        async with Client(f"{base}/envs/{spec.id}/mcp", mode=mode) as client:
            await client.list_tools()
            await client.list_prompts()
            await client.list_resources()
            assert await open_episodes(base, spec.id) == []
            tool, arguments = FORECAST
            first = await client.call_tool(tool, arguments)
            second = await client.call_tool(tool, arguments)
            assert first.structured_content is not None
            assert second.structured_content is not None
            assert [first.structured_content["lookups"], second.structured_content["lookups"]] == [
                1,
                2,
            ]
            assert len(await open_episodes(base, spec.id)) == 1
        assert await open_episodes(base, spec.id) == []
