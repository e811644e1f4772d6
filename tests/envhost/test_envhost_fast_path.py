"""The direct tools/call path of /episodes/{id}/mcp answers as the MCP SDK would.

Every request is sent twice, to two apps serving the same environment: one with the fast path
on, one with it off (``tool_call_fast_path=False``: the SDK behind the router answers), and both
replies must be the same: for the calls the fast path serves, and for every request one of its
checks hands to the SDK. The setting, and the guard on the SDK's version, must leave the path
out of the app entirely.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import httpx2
import mcp_types
import pytest
from envhost_support import register, weather_spec
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER
from starlette.types import Receive, Scope, Send

import astra_envhost.app
from astra_common.library_guard import LibraryGuard
from astra_envhost.app import create_app
from astra_envhost.argument_shapes import argument_shape
from astra_envhost.fast_path import SDK_GUARD, ToolCallFastPath, ToolCallFastPathMiddleware
from astra_envhost.mcp_results import call_tool_result, tool_result
from astra_envhost.registry import argument_errors
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


def call_body(name: str, arguments: Any, request_id: Any = 7) -> dict[str, Any]:
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


class ServedCount:
    """Counts the requests an app's fast path answered itself (a probe around its ``serve``)."""

    def __init__(self, fast_path: ToolCallFastPath) -> None:
        self.inner = fast_path.serve
        self.served = 0
        fast_path.serve = self.serve  # type: ignore[method-assign]

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        fallback = await self.inner(scope, receive, send)
        self.served += fallback is None
        return fallback


def has_fast_path(app: Any) -> bool:
    """Whether the fast path is in ``app``: its state and its middleware agree."""
    in_state = app.state.tool_call_fast_path is not None
    in_stack = any(entry.cls is ToolCallFastPathMiddleware for entry in app.user_middleware)
    assert in_state == in_stack
    return in_state


@dataclass
class Envhost:
    """One environment on two apps: ``fast`` with the fast path on, ``sdk`` with it off."""

    fast: httpx.AsyncClient
    sdk: httpx.AsyncClient
    probe: ServedCount
    fast_episode: str
    sdk_episode: str

    @property
    def clients(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        return self.fast, self.sdk

    async def both(
        self, path: str | None = None, **request: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        """The reply of the app with the fast path on, then of the one with it off (the SDK's),
        each to ``path``, or by default to its own episode."""
        fast = await self.fast.post(path or f"/episodes/{self.fast_episode}/mcp", **request)
        sdk = await self.sdk.post(path or f"/episodes/{self.sdk_episode}/mcp", **request)
        return fast, sdk

    async def calls(self) -> tuple[list[str], list[str]]:
        """The tool names each app's episode has called, in order."""
        names = []
        for client, episode_id in ((self.fast, self.fast_episode), (self.sdk, self.sdk_episode)):
            log = (await client.get(f"/v1/episodes/{episode_id}")).json()
            names.append([call["tool_name"] for call in log["calls"]])
        return names[0], names[1]


@asynccontextmanager
async def envhost_app(settings: EnvhostSettings, **headers: str) -> AsyncIterator[Envhost]:
    """Two apps in process, the fast path on and off, an episode of the weather environment
    on each, and the probe of the fast path's answers."""
    spec = weather_spec()
    await register(settings.database_url, spec)
    apps = [
        create_app(settings),
        create_app(settings.model_copy(update={"tool_call_fast_path": False})),
    ]
    assert [has_fast_path(app) for app in apps] == [True, False]
    probe = ServedCount(apps[0].state.tool_call_fast_path)
    clients: list[httpx.AsyncClient] = []
    episodes: list[str] = []
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://127.0.0.1",
                    headers=headers,
                )
            )
            response = await client.post("/v1/episodes", json={"env_id": spec.id})
            assert response.status_code == 201
            clients.append(client)
            episodes.append(response.json()["id"])
        yield Envhost(clients[0], clients[1], probe, episodes[0], episodes[1])


def assert_same(fast: httpx.Response, sdk: httpx.Response) -> None:
    assert fast.status_code == sdk.status_code
    assert fast.headers.get("content-type") == sdk.headers.get("content-type")
    assert fast.headers.get("content-length") == sdk.headers.get("content-length")
    if sdk.headers.get("content-type") == "application/json":
        assert fast.json() == sdk.json()
    else:
        assert fast.content == sdk.content


SERVED = [
    pytest.param("get_city_id", {"name": "Paris"}, 7, None, id="valid"),
    pytest.param("get_city_id", {"name": "Paris"}, "call-1", None, id="string-id"),
    pytest.param(
        "get_city_id", {"name": "Atlantis"}, 7, "unknown city 'Atlantis'", id="tool-error"
    ),
    pytest.param("get_city_id", {"nom": "Paris"}, 7, "invalid arguments", id="missing-argument"),
    pytest.param("get_city_id", {"name": 3}, 7, '3 is not of type "string"', id="wrong-type"),
    pytest.param("get_city_id", {"name": True}, 7, "invalid arguments", id="bool-for-string"),
    pytest.param("get_city_id", None, 7, '"name" is a required property', id="no-arguments"),
    pytest.param(
        "get_forecast", {"city_id": "c-75", "days": 0}, 7, "less than the minimum", id="minimum"
    ),
    # Valid (an integral float is an integer); the tool then fails, before its state changes.
    pytest.param(
        "get_forecast", {"city_id": "c-00", "days": 2.0}, 7, "no forecast", id="integral-float"
    ),
    pytest.param("get_weather", {"city": "Paris"}, 7, "unknown tool", id="unknown-tool"),
]


@pytest.mark.parametrize(("tool", "arguments", "request_id", "error"), SERVED)
async def test_served_calls_get_the_sdks_reply(
    tool: str, arguments: Any, request_id: Any, error: str | None, envhost_settings: Settings
) -> None:
    async with envhost_app(envhost_settings()) as host:
        body = call_body(tool, arguments, request_id)
        fast, sdk = await host.both(json=body, headers=call_headers(tool))
        assert host.probe.served == 1
        assert_same(fast, sdk)
        assert fast.status_code == 200
        result = mcp_types.CallToolResult.model_validate(fast.json()["result"])
        calls = await host.calls()
    assert calls == ([tool], [tool])  # both journaled
    assert result.is_error == (error is not None)
    if error is not None:
        assert error in result.content[0].text  # type: ignore[union-attr]


def body_with(**changes: Any) -> dict[str, Any]:
    body = call_body("get_city_id", {"name": "Paris"})
    for key, value in changes.items():
        if key == "meta":
            body["params"]["_meta"] = value
        elif key == "params":
            body["params"] = value
        else:
            body[key] = value
    return body


META = {mcp_types.PROTOCOL_VERSION_META_KEY: VERSION, mcp_types.CLIENT_CAPABILITIES_META_KEY: {}}
PARSE = {"content": b"{not json"}
HANDED_OVER = [
    pytest.param({"accept": "text/html"}, {}, id="wrong-accept"),
    pytest.param({"accept": "text/event-stream"}, {}, id="sse-only-accept"),
    pytest.param({"content-type": "text/plain"}, {}, id="wrong-content-type"),
    pytest.param({"host": "evil.example"}, {}, id="bad-host"),
    pytest.param({"origin": "http://evil.example"}, {}, id="bad-origin"),
    pytest.param({MCP_PROTOCOL_VERSION_HEADER: None}, {}, id="no-protocol-header"),
    pytest.param({MCP_PROTOCOL_VERSION_HEADER: "2025-11-25"}, {}, id="old-protocol-header"),
    pytest.param({MCP_PROTOCOL_VERSION_HEADER: "2099-01-01"}, {}, id="unknown-protocol"),
    pytest.param({MCP_NAME_HEADER: "get_forecast"}, {}, id="name-mismatch"),
    pytest.param({MCP_METHOD_HEADER: "tools/list"}, {}, id="method-header-mismatch"),
    pytest.param({"mcp-session-id": "abc"}, {}, id="session-id"),
    pytest.param({}, PARSE, id="malformed-json"),
    pytest.param({}, {"json": [call_body("get_city_id", {})]}, id="batch"),
    pytest.param({}, {"json": body_with(jsonrpc="1.0")}, id="wrong-jsonrpc"),
    pytest.param({}, {"json": body_with(id=True)}, id="bool-id"),
    pytest.param({}, {"json": body_with(id=None)}, id="null-id"),
    pytest.param({}, {"json": body_with(extra=1)}, id="extra-member"),
    pytest.param({}, {"json": body_with(method="tools/list")}, id="method-mismatch"),
    pytest.param({}, {"json": body_with(meta=None)}, id="no-meta"),
    pytest.param({}, {"json": body_with(meta={"x": 1})}, id="meta-without-envelope"),
    pytest.param(
        {},
        {"json": body_with(meta={**META, mcp_types.PROTOCOL_VERSION_META_KEY: "2025-11-25"})},
        id="meta-version-mismatch",
    ),
    pytest.param(
        {MCP_PROTOCOL_VERSION_HEADER: "2099-01-01"},
        {"json": body_with(meta={**META, mcp_types.PROTOCOL_VERSION_META_KEY: "2099-01-01"})},
        id="unsupported-protocol",
    ),
    pytest.param(
        {},
        {"json": body_with(meta={**META, mcp_types.CLIENT_CAPABILITIES_META_KEY: 3})},
        id="bad-capabilities",
    ),
    pytest.param(
        {},
        {"json": body_with(meta={**META, mcp_types.CLIENT_INFO_META_KEY: {"name": "x"}})},
        id="bad-client-info",
    ),
    pytest.param(
        {},
        {"json": body_with(params={"name": "get_city_id", "arguments": [1], "_meta": META})},
        id="arguments-not-object",
    ),
    pytest.param(
        {},
        {"json": body_with(params={"name": 3, "_meta": META})},
        id="name-not-string",
    ),
]


@pytest.mark.parametrize(("headers", "request_body"), HANDED_OVER)
async def test_requests_it_does_not_serve_get_the_sdks_answer(
    headers: dict[str, str | None], request_body: dict[str, Any], envhost_settings: Settings
) -> None:
    async with envhost_app(envhost_settings()) as host:
        sent = {
            key: value
            for key, value in (call_headers("get_city_id") | headers).items()
            if value is not None
        }
        request = request_body or {"json": call_body("get_city_id", {"name": "Paris"})}
        fast, sdk = await host.both(headers=sent, **request)
        assert host.probe.served == 0
        assert_same(fast, sdk)


async def test_calls_with_uncommon_envelopes_are_served_after_the_sdks_schema_check(
    envhost_settings: Settings,
) -> None:
    """Capabilities, progress tokens or no client info: valid, checked by the SDK's schema."""
    metas = [
        META,
        {**META, mcp_types.CLIENT_CAPABILITIES_META_KEY: {"roots": {}}},
        {**META, "progressToken": "p-1"},
        {**META, mcp_types.CLIENT_INFO_META_KEY: {"name": "x", "version": "1", "title": "X"}},
    ]
    async with envhost_app(envhost_settings()) as host:
        for meta in metas:
            body = body_with(meta=meta)
            fast, sdk = await host.both(json=body, headers=call_headers("get_city_id"))
            assert_same(fast, sdk)
            assert fast.json()["result"]["structuredContent"] == {"city_id": "c-75"}
        assert host.probe.served == len(metas)


async def test_unknown_episodes_get_the_endpoints_answer(envhost_settings: Settings) -> None:
    async with envhost_app(envhost_settings()) as host:
        body = call_body("get_city_id", {"name": "Paris"})
        fast, sdk = await host.both(
            "/episodes/ep_missing/mcp", json=body, headers=call_headers("get_city_id")
        )
        assert host.probe.served == 0
    assert_same(fast, sdk)
    assert fast.status_code == 404  # an episode not open here: 404, as at connect
    assert "ep_missing" in fast.json()["detail"]


@pytest.mark.parametrize(
    ("authorization", "served"),
    [(None, False), ("Bearer wrong", False), ("Basic s3cret", False), ("bearer s3cret", True)],
)
async def test_bearer_token(
    authorization: str | None, served: bool, envhost_settings: Settings
) -> None:
    settings = envhost_settings(api_token="s3cret")
    async with envhost_app(settings, authorization="Bearer s3cret") as host:
        headers = call_headers("get_city_id")
        if authorization is not None:
            headers["authorization"] = authorization
        else:
            for client in host.clients:
                client.headers.pop("authorization")
        body = call_body("get_city_id", {"name": "Paris"})
        fast, sdk = await host.both(json=body, headers=headers)
        assert host.probe.served == int(served)
    assert_same(fast, sdk)
    assert fast.status_code == (200 if served else 401)


async def test_served_calls_are_counted_in_the_metrics(envhost_settings: Settings) -> None:
    async with envhost_app(envhost_settings()) as host:
        body = call_body("get_city_id", {"name": "Paris"})
        await host.both(json=body, headers=call_headers("get_city_id"))
        assert host.probe.served == 1
        metrics = [(await client.get("/metrics")).text for client in host.clients]
    line = (
        'astra_http_requests_total{method="POST",route="/episodes/{episode_id}/mcp",'
        'service="envhost",status="200"} 1.0'
    )
    # The call the fast path answered is counted as the SDK path's is: same labels.
    assert [line in text for text in metrics] == [True, True]


SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": "integer", "description": "n"}}},
    {"type": "object", "properties": {"a": {"type": "number"}}, "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": ["boolean", "null"]}, "b": {}}},
    {"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "object"}}},
]
VALUES = [None, True, False, 0, 1, 1.0, 1.5, -2, "", "x", [], [1], {}, {"k": 1}]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_argument_shapes_never_accept_what_the_validator_refuses(schema: dict[str, Any]) -> None:
    validator = Draft202012Validator(schema)
    shape = argument_shape(validator)
    assert shape is not None
    cases: list[dict[str, Any]] = [{}, {"other": 1}]
    cases += [{"a": value} for value in VALUES]
    cases += [{"a": value, "b": other} for value in VALUES for other in VALUES]
    for arguments in cases:
        assert shape.accepts(arguments) == (not argument_errors(validator, arguments)), arguments


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}},
        {"type": "object", "properties": {"a": {"enum": ["x"]}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {}}},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"properties": {"a": {"type": "string"}}},
    ],
)
def test_other_schemas_have_no_shape(schema: dict[str, Any]) -> None:
    assert argument_shape(Draft202012Validator(schema)) is None


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path-on", "fast-path-off"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_clients_in_both_modes(
    mode: str, fast_path: bool, database_url: str, envhost_settings: Settings
) -> None:
    spec = weather_spec()
    await register(database_url, spec)
    app = create_app(envhost_settings(tool_call_fast_path=fast_path))
    assert has_fast_path(app) == fast_path
    probe = ServedCount(app.state.tool_call_fast_path) if fast_path else None
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
    if probe is not None:
        assert probe.served == (2 if mode == "auto" else 0)


@pytest.fixture
def fast_path_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests any fast path in this process answered itself."""
    answered: list[str] = []
    serve = ToolCallFastPath.serve

    async def counted(
        self: ToolCallFastPath, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        fallback = await serve(self, scope, receive, send)
        if fallback is None:
            answered.append(scope["path"])
        return fallback

    monkeypatch.setattr(ToolCallFastPath, "serve", counted)
    return answered


async def call_once(app: Any, database_url: str) -> httpx.Response:
    """One tools/call the fast path would serve, sent to a fresh episode of ``app``."""
    spec = weather_spec()
    await register(database_url, spec)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            created = await client.post("/v1/episodes", json={"env_id": spec.id})
            assert created.status_code == 201
            return await client.post(
                f"/episodes/{created.json()['id']}/mcp",
                json=call_body("get_city_id", {"name": "Paris"}),
                headers=call_headers("get_city_id"),
            )


@pytest.mark.parametrize("enabled", [True, False], ids=["on", "off"])
async def test_the_setting_turns_the_fast_path_off(
    enabled: bool, fast_path_answers: list[str], database_url: str, envhost_settings: Settings
) -> None:
    app = create_app(envhost_settings(tool_call_fast_path=enabled))
    assert has_fast_path(app) == enabled
    reply = await call_once(app, database_url)
    assert reply.status_code == 200
    assert reply.json()["result"]["structuredContent"] == {"city_id": "c-75"}
    assert len(fast_path_answers) == int(enabled)  # off: the SDK answered


def test_the_installed_sdk_is_the_tested_one() -> None:
    """The default (on) holds only where the pinned SDK is the one the path was tested with."""
    assert SDK_GUARD.allows()


@pytest.mark.parametrize("untested", [{"mcp": "2.4.0"}, {"mcp-types": "2.3.1"}])
async def test_an_untested_sdk_version_leaves_the_fast_path_out_with_a_warning(
    untested: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fast_path_answers: list[str],
    database_url: str,
    envhost_settings: Settings,
) -> None:
    versions = {"mcp": "2.3.0", "mcp-types": "2.3.0"} | untested
    guard = LibraryGuard(
        SDK_GUARD.tested,
        what=SDK_GUARD.what,
        setting=SDK_GUARD.setting,
        version_of=versions.__getitem__,  # the version lookup's unit test double
    )
    monkeypatch.setattr(astra_envhost.app, "SDK_GUARD", guard)
    with caplog.at_level(logging.WARNING, logger="astra.library_guard"):
        app = create_app(envhost_settings())
        create_app(envhost_settings())  # a second app: the verdict is kept, no second line
    assert not has_fast_path(app)
    [record] = caplog.records
    [(library, installed)] = untested.items()
    message = record.getMessage()
    for part in (library, f"version {installed}", "==2.3.0", "ASTRA_ENVHOST_TOOL_CALL_FAST_PATH"):
        assert part in message, part
    reply = await call_once(app, database_url)
    assert reply.json()["result"]["structuredContent"] == {"city_id": "c-75"}
    assert fast_path_answers == []  # the SDK answered
