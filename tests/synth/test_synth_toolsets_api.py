"""Toolsets over REST: JSON tool lists, OpenAPI documents and a real envhost environment over
MCP registered, filtered with reasons, stored, and their tool-call graphs read back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from envhost_support import register
from synth_support import synth_stack

from astra.redis_server import free_port
from astra_envhost.settings import EnvhostSettings
from astra_synth.procedural import generate_environments


def tool(
    tool_name: str, description: str, output: dict[str, Any] | None = None, **params: Any
) -> Any:
    entry: dict[str, Any] = {
        "name": tool_name,
        "description": description,
        "parameters": {"type": "object", "properties": params, "required": list(params)},
    }
    if output is not None:
        entry["outputSchema"] = output
    return entry


CITY = {"type": "object", "properties": {"city_id": {"type": "string"}}}
WEATHER = [
    tool("find_city", "Find a city id by the city's name.", CITY, name={"type": "string"}),
    tool(
        "get_forecast",
        "Weather forecast for the place with the given id.",
        city_id={"type": "string"},
    ),
    tool(
        "get_alerts",
        "Weather alerts issued for the place with the given id.",
        city_id={"type": "string"},
    ),
    tool("vague", "Does it."),
]


async def test_register_read_and_graph(
    database_url: str, redis_url: str, envhost_settings: Callable[..., EnvhostSettings],
    tmp_path: Path,
) -> None:  # fmt: skip
    spec = next(
        s for s in generate_environments(20, 81, hops=[4, 5], scenario_types=["multi_hop"])
        if len(s.tools) >= 3
    )  # fmt: skip
    await register(database_url, spec)
    async with synth_stack(database_url, redis_url, tmp_path, envhost_settings) as s:
        body = {
            "id": "weather",
            "json_tools": [
                {"name": "weather", "tools": WEATHER},
                {"name": "tiny", "tools": WEATHER[:2]},
            ],
            "mcp": [{"url": f"{s.envhost_url}/envs/{spec.id}/mcp", "name": "env"}],
        }
        response = await s.http.post("/v1/toolsets", json=body)
        assert response.status_code == 201, response.text
        toolset = response.json()
        servers = {server["name"]: server for server in toolset["servers"]}
        assert set(servers) == {"weather", "env"}
        assert [t["name"] for t in servers["weather"]["tools"]] == [
            "find_city", "get_forecast", "get_alerts",
        ]  # fmt: skip
        assert servers["env"]["source"] == "mcp"
        assert len(servers["env"]["tools"]) == len(spec.tools)
        reasons = {(r["subject"], r["reason"]) for r in toolset["rejected"]}
        assert ("tool:weather/vague", "vague_description") in reasons
        assert ("server:tiny", "too_few_tools") in reasons

        assert (await s.http.get("/v1/toolsets")).json() == ["weather"]
        assert (await s.http.get("/v1/toolsets/weather")).json() == toolset
        graphs = {g["server"]: g for g in (await s.http.get("/v1/toolsets/weather/graph")).json()}
        assert set(graphs) == {"weather", "env"}
        edges = {(e["source"], e["target"]) for e in graphs["weather"]["edges"]}
        # find_city returns a city_id, which both other tools take: schema links.
        assert edges == {("find_city", "get_forecast"), ("find_city", "get_alerts")}
        assert all(e["from_schema"] == 1 and e["from_llm"] == 0 for e in graphs["weather"]["edges"])


async def test_bad_toolset_requests(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with synth_stack(
        database_url, redis_url, tmp_path, envhost_url="http://127.0.0.1:9"
    ) as s:

        async def post(body: dict[str, Any]) -> httpx.Response:
            return await s.http.post("/v1/toolsets", json=body)

        assert (await post({})).status_code == 422
        assert (await post({"id": "../up", "json_tools": []})).status_code == 422
        dead = await post({"mcp": [{"url": f"http://127.0.0.1:{free_port()}/mcp"}]})
        assert dead.status_code == 422
        assert "listing the tools of" in dead.json()["detail"]
        twice = await post({"json_tools": [{"name": "a", "tools": []}, {"name": "a", "tools": []}]})
        assert twice.status_code == 422
        assert "distinct" in twice.json()["detail"]
        assert (await s.http.get("/v1/toolsets/nope")).status_code == 404
        assert (await s.http.get("/v1/toolsets/nope/graph")).status_code == 404
