"""The direct tools/call path of /episodes/{id}/mcp answers as the MCP SDK would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
import httpx2
import mcp_types
import pytest
from envhost_support import register, weather_spec
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER
from starlette.routing import Route

from astra_envhost.app import create_app
from astra_envhost.fast_path import ToolCallFastPath
from astra_envhost.mcp_results import call_tool_result, tool_result
from astra_envhost.mcp_server import MCPEndpoint
from astra_envhost.settings import EnvhostSettings

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]
VERSION = "2026-07-28"


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"city_id": "c-75", "nested": {"none": None, "list": [1, None, "é"]}}, None),
        (["a", 1, None], None),
        ("text", None),
        (None, None),
        (3.5, None),
        ({1: (2, 3)}, None),
        ({"when": date(2026, 1, 2)}, None),
        ({"bad": float("nan")}, None),
        (None, "ValueError: unknown city 'Atlantis'"),
    ],
)
def test_wire_result_equals_the_sdk_dump(result: Any, error: str | None) -> None:
    expected = tool_result(result, error).model_dump(by_alias=True, mode="json", exclude_none=True)
    wire = json.dumps(call_tool_result(result, error), separators=(",", ":"))
    assert wire == json.dumps(expected, separators=(",", ":"))


def call_body(name: str, arguments: dict[str, Any], request_id: int | str = 7) -> dict[str, Any]:
    meta = {
        mcp_types.PROTOCOL_VERSION_META_KEY: VERSION,
        mcp_types.CLIENT_INFO_META_KEY: {"name": "test", "version": "0"},
        mcp_types.CLIENT_CAPABILITIES_META_KEY: {},
    }
    params = {"name": name, "arguments": arguments, "_meta": meta}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def call_headers(name: str, **extra: str) -> dict[str, str]:
    return {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        MCP_PROTOCOL_VERSION_HEADER: VERSION,
        MCP_METHOD_HEADER: "tools/call",
        MCP_NAME_HEADER: name,
        **extra,
    }


class CountingFastPath:
    """Wraps the app's real fast path and counts the requests it answered itself."""

    def __init__(self, inner: ToolCallFastPath) -> None:
        self.inner, self.served = inner, 0

    async def serve(self, scope: Any, receive: Any, send: Any) -> Any:
        fallback = await self.inner.serve(scope, receive, send)
        self.served += fallback is None
        return fallback


@asynccontextmanager
async def envhost_app(
    settings: EnvhostSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingFastPath]]:
    app = create_app(settings)
    endpoint = next(
        route.app
        for route in app.router.routes
        if isinstance(route, Route) and isinstance(route.app, MCPEndpoint)
    )
    counter = CountingFastPath(endpoint.fast_path)
    endpoint.fast_path = counter  # type: ignore[assignment]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client, counter


async def test_fast_and_sdk_paths_give_the_same_reply(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost_app(envhost_settings()) as (client, counter):
        response = await client.post("/v1/episodes", json={"env_id": spec.id})
        path = f"/episodes/{response.json()['id']}/mcp"
        replies = []
        for arguments in ({"name": "Paris"}, {"name": "Atlantis"}, {"nom": "Paris"}):
            body = call_body("get_city_id", arguments)
            fast = await client.post(path, json=body, headers=call_headers("get_city_id"))
            # An Mcp-Param-* header sends the same call through the SDK (nothing declares it).
            sdk_headers = call_headers("get_city_id", **{"Mcp-Param-Unused": "x"})
            sdk = await client.post(path, json=body, headers=sdk_headers)
            assert (fast.status_code, sdk.status_code) == (200, 200)
            assert fast.headers["content-type"] == sdk.headers["content-type"]
            assert fast.json() == sdk.json()  # the same JSON-RPC response (key order aside)
            replies.append(mcp_types.CallToolResult.model_validate(fast.json()["result"]))
        assert counter.served == 3
        log = (await client.get(f"/v1/episodes/{response.json()['id']}")).json()
    assert [call["seq"] for call in log["calls"]] == list(range(6))  # both paths recorded
    assert replies[0].structured_content == {"city_id": "c-75"}
    assert replies[1].is_error
    assert replies[2].is_error
    assert "invalid arguments for get_city_id" in replies[2].content[0].text  # type: ignore[union-attr]


async def test_requests_it_does_not_serve_get_the_sdks_answer(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    async with envhost_app(envhost_settings()) as (client, counter):
        response = await client.post("/v1/episodes", json={"env_id": spec.id})
        path = f"/episodes/{response.json()['id']}/mcp"
        body = call_body("get_city_id", {"name": "Paris"})
        mismatch = await client.post(path, json=body, headers=call_headers("get_forecast"))
        assert mismatch.status_code == 400
        assert mismatch.json()["error"]["code"] == mcp_types.HEADER_MISMATCH
        bad_host = await client.post(
            path, json=body, headers=call_headers("get_city_id", host="evil.example")
        )
        assert bad_host.status_code == 421
        not_json = await client.post(
            path, content=b"{not json", headers=call_headers("get_city_id")
        )
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == mcp_types.PARSE_ERROR
        missing = await client.post(
            "/episodes/ep_missing/mcp", json=body, headers=call_headers("get_city_id")
        )
        assert missing.status_code == 200
        result = mcp_types.CallToolResult.model_validate(missing.json()["result"])
        assert result.is_error
        assert "ep_missing" in result.content[0].text  # type: ignore[union-attr]
        assert counter.served == 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_clients_in_both_modes(
    mode: str, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    settings = envhost_settings()
    app = create_app(settings)
    endpoint = next(
        route.app
        for route in app.router.routes
        if isinstance(route, Route) and isinstance(route.app, MCPEndpoint)
    )
    counter = CountingFastPath(endpoint.fast_path)
    endpoint.fast_path = counter  # type: ignore[assignment]
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            response = await http.post("/v1/episodes", json={"env_id": spec.id})
            url = f"http://127.0.0.1/episodes/{response.json()['id']}/mcp"
            connection = streamable_http_client(url, http_client=http)
            async with Client(connection, mode=mode) as mcp:
                first = await mcp.call_tool("get_forecast", {"city_id": "c-75"})
                second = await mcp.call_tool("get_forecast", {"city_id": "c-75", "days": 2})
    assert first.structured_content is not None
    assert second.structured_content is not None
    assert (first.structured_content["lookups"], second.structured_content["lookups"]) == (1, 2)
    assert second.structured_content["days"] == 2
    assert counter.served == (2 if mode == "auto" else 0)
