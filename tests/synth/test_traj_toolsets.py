"""Tool-document ingestion: JSON lists, OpenAPI documents and real MCP servers, normalised to
the OpenAI function schema and filtered with reasons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_traj_gold import envhost_with, needs_sandbox

from astra_envhost.settings import EnvhostSettings
from astra_proto.api.synth import TrajectorySettings
from astra_synth.procedural import generate_environments
from astra_synth.trajectories.toolsets import (
    ToolConversionError,
    build_toolset,
    normalise_tool,
    server_from_json,
    server_from_mcp,
    server_from_openapi,
)


def tool(tool_name: str, description: str, **parameters: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool_name, "description": description,
            "parameters": {"type": "object", "properties": parameters,
                           "required": list(parameters)}}}  # fmt: skip


GOOD = [
    tool("find_city", "Find a city by its name.", name={"type": "string"}),
    tool("get_forecast", "Weather forecast of a city id.", city_id={"type": "string"}),
    {
        "name": "get_alerts",
        "description": "Weather alerts issued for a city.",
        "inputSchema": {"properties": {"city_id": {"type": "string"}}},
    },
]


def test_json_tools_are_normalised_and_bad_ones_dropped_with_reasons() -> None:
    documents = [
        *GOOD,
        tool("vague", "Does it."),
        {"name": "bad name!", "description": "A tool with a bad name here."},
        {
            "name": "array_args",
            "description": "Arguments that are not an object.",
            "parameters": {"type": "array"},
        },
        {
            "name": "broken_schema",
            "description": "A schema that is not valid JSON Schema.",
            "parameters": {"type": "object", "properties": {"x": {"type": "colour"}}},
        },
        {
            "name": "ghost_required",
            "description": "Requires a property it never defines.",
            "parameters": {"type": "object", "properties": {}, "required": ["x"]},
        },
        {
            "name": "remote",
            "description": "Refers to a schema on the network.",
            "parameters": {"type": "object", "properties": {"x": {"$ref": "http://x/y.json"}}},
        },
        tool("find_city", "A second tool with the same name."),
    ]
    toolset = build_toolset("ts1", [server_from_json("weather", {"tools": documents})])
    (server,) = toolset.servers
    assert [t.name for t in server.tools] == ["find_city", "get_forecast", "get_alerts"]
    assert server.tools[2].parameters == {
        "type": "object", "properties": {"city_id": {"type": "string"}}
    }  # fmt: skip
    assert server.tools[0].to_openai() == GOOD[0]
    reasons = {r.subject: r.reason for r in toolset.rejected}
    assert reasons == {
        "tool:weather/vague": "vague_description",
        "tool:weather/bad name!": "bad_name",
        "tool:weather/array_args": "unconvertible_schema",
        "tool:weather/broken_schema": "unconvertible_schema",
        "tool:weather/ghost_required": "unconvertible_schema",
        "tool:weather/remote": "unconvertible_schema",
        "tool:weather/find_city": "duplicate_name",
    }


def test_servers_with_too_few_usable_tools_are_dropped() -> None:
    toolset = build_toolset(
        "ts2",
        [server_from_json("small", GOOD[:2]), server_from_json("ok", GOOD)],
        TrajectorySettings(min_tools_per_server=3),
    )
    assert [s.name for s in toolset.servers] == ["ok"]
    assert [(r.subject, r.reason) for r in toolset.rejected] == [("server:small", "too_few_tools")]
    with pytest.raises(ValueError, match="distinct"):
        build_toolset("ts3", [server_from_json("a", GOOD), server_from_json("a", GOOD)])
    with pytest.raises(ValueError, match="tools"):
        server_from_json("x", {"functions": []})
    with pytest.raises(ToolConversionError, match="vague_description"):
        normalise_tool({"name": "x", "description": "short one"}, min_description_words=3)


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pet Store", "description": "Pets for sale and adoption."},
    "components": {"schemas": {
        "Pet": {"type": "object", "properties": {"pet_id": {"type": "string"},
                                                 "name": {"type": "string"}}},
        "NewPet": {"type": "object", "properties": {"name": {"type": "string"},
                   "species": {"type": "string", "enum": ["cat", "dog"]}},
                   "required": ["name"]},
    }},
    "paths": {
        "/pets/{pet_id}": {
            "parameters": [{"name": "pet_id", "in": "path", "schema": {"type": "string"}}],
            "get": {"operationId": "get_pet", "summary": "Read one pet by its id.",
                    "responses": {"200": {"content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Pet"}}}}}},
        },
        "/pets": {
            "get": {"operationId": "list_pets", "description": "List the pets of a species.",
                    "parameters": [{"name": "species", "in": "query", "required": True,
                                    "schema": {"type": "string"}},
                                   {"name": "X-Trace", "in": "header"}]},
            "post": {"operationId": "add_pet", "summary": "Add a new pet for sale.",
                     "requestBody": {"content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/NewPet"}}}}},
        },
        "/remote": {"get": {"operationId": "remote_op", "summary": "Uses a remote schema here.",
                            "parameters": [{"$ref": "https://example.com/p.json"}]}},
    },
}  # fmt: skip


def test_openapi_operations_become_tools() -> None:
    raw = server_from_openapi(OPENAPI)
    toolset = build_toolset("pets", [raw])
    (server,) = toolset.servers
    assert server.name == "Pet_Store"
    assert server.description == "Pets for sale and adoption."
    tools = {t.name: t for t in server.tools}
    assert sorted(tools) == ["add_pet", "get_pet", "list_pets"]
    assert tools["get_pet"].parameters["required"] == ["pet_id"]
    assert tools["get_pet"].output_schema == OPENAPI["components"]["schemas"]["Pet"]
    assert tools["list_pets"].parameters["properties"] == {"species": {"type": "string"}}
    assert tools["add_pet"].parameters["properties"]["species"]["enum"] == ["cat", "dog"]
    assert tools["add_pet"].parameters["required"] == ["name"]
    assert [(r.subject, r.reason) for r in toolset.rejected] == [
        ("tool:Pet_Store/remote_op", "unconvertible_schema")
    ]
    with pytest.raises(ValueError, match="OpenAPI 3"):
        server_from_openapi({"swagger": "2.0"})


@pytest.mark.integration
@needs_sandbox
async def test_an_envhost_environment_is_ingested_over_mcp(
    envhost_settings: Callable[..., EnvhostSettings],
) -> None:
    spec = next(
        s for s in generate_environments(20, 81, hops=[4, 5], scenario_types=["multi_hop"])
        if len(s.tools) >= 3
    )  # fmt: skip
    async with envhost_with(envhost_settings(), spec) as base:
        raw = await server_from_mcp(f"{base}/envs/{spec.id}/mcp", name="env")
    toolset = build_toolset("mcp", [raw])
    (server,) = toolset.servers
    assert server.source == "mcp"
    assert server.url == f"{base}/envs/{spec.id}/mcp"
    assert {t.name: t.parameters for t in server.tools} == {
        t.spec.name: t.spec.parameters for t in spec.tools
    }
