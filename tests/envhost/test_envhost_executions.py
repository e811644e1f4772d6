"""POST /v1/executions over the real envhost app (in process): tool code run once in a sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import FORECAST_CODE, SLOW_CODE, tool, weather_spec

from astra_envhost.app import create_app
from astra_envhost.executions import ExecutionRunner
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    ExecutionCall,
    ExecutionRequest,
    ExecutionResult,
    SyntheticTool,
)

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]


@asynccontextmanager
async def envhost_client(settings: EnvhostSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The real envhost app in process, lifespan included."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://envhost") as client:
            yield client


def weather_tools() -> list[SyntheticTool]:
    return list(weather_spec().tools)


def request(tools: list[SyntheticTool], *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    body = ExecutionRequest(
        tools=tools, calls=[ExecutionCall(tool_name=name, arguments=args) for name, args in calls]
    )
    return body.model_dump(mode="json")


async def execute(client: httpx.AsyncClient, body: dict[str, Any]) -> ExecutionResult:
    response = await client.post("/v1/executions", json=body)
    assert response.status_code == 200, response.text
    return ExecutionResult.model_validate(response.json())


async def test_calls_run_in_order_with_state_and_per_call_errors(
    envhost_settings: Settings,
) -> None:
    body = request(
        weather_tools(),
        ("get_city_id", {"name": "Paris"}),
        ("get_forecast", {"city_id": "c-75"}),
        ("get_city_id", {"name": "Atlantis"}),  # the tool raises
        ("get_forecast", {"city_id": "c-69", "days": 0}),  # schema: minimum 1
        ("get_forecast", {}),  # schema: required property missing
        ("book_hotel", {"city_id": "c-75"}),  # not a tool of the request
        ("get_forecast", {"city_id": "c-69", "days": 2}),
    )
    async with envhost_client(envhost_settings()) as client:
        result = await execute(client, body)
        again = await execute(
            client, request(weather_tools(), ("get_forecast", {"city_id": "c-75"}))
        )

    outcomes = result.outcomes
    assert [o.tool_name for o in outcomes] == [call["tool_name"] for call in body["calls"]]
    assert outcomes[0].output == {"city_id": "c-75"}
    assert outcomes[0].error is None
    assert outcomes[1].output == {
        "temperature_c": 21,
        "condition": "sunny",
        "days": 1,
        "lookups": 1,
    }
    assert outcomes[2].output is None
    assert outcomes[2].error is not None
    assert "ValueError" in outcomes[2].error
    assert "Atlantis" in outcomes[2].error
    assert outcomes[3].error is not None
    assert outcomes[3].error.startswith("invalid arguments for get_forecast: days:")
    assert (
        outcomes[4].error == 'invalid arguments for get_forecast: "city_id" is a required property'
    )
    assert outcomes[5].error == (
        "unknown tool 'book_hotel'; this request has: get_city_id, get_forecast"
    )
    # State persisted across the calls of the request: refused calls never reached the tool.
    assert outcomes[6].output is not None
    assert outcomes[6].output["lookups"] == 2
    assert all(o.latency_ms >= 0 for o in outcomes)
    # A new request starts from a fresh sandbox.
    assert again.outcomes[0].output is not None
    assert again.outcomes[0].output["lookups"] == 1


async def test_a_timeout_is_that_calls_error_and_the_next_call_runs(
    envhost_settings: Settings,
) -> None:
    tools = [
        tool("spin", "Never returns.", SLOW_CODE, {"seconds": {"type": "number"}}),
        tool("get_forecast", "Forecast.", FORECAST_CODE, {"city_id": {"type": "string"}}),
    ]
    body = request(
        tools,
        ("get_forecast", {"city_id": "c-75"}),
        ("spin", {"seconds": 5}),
        ("get_forecast", {"city_id": "c-75"}),
    )
    async with envhost_client(envhost_settings(tool_timeout_s=1.0)) as client:
        result = await execute(client, body)
    first, spun, after = result.outcomes
    assert first.output is not None
    assert first.output["lookups"] == 1
    assert spun.error is not None
    assert "timed out after 1s" in spun.error
    # The timeout killed the worker: the next call ran in a fresh one, its state reset.
    assert after.output is not None
    assert after.output["lookups"] == 1


@pytest.mark.parametrize("sandbox", ["bubblewrap", "none"])
async def test_executions_run_in_the_configured_sandbox(
    sandbox: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "host-only-file"
    marker.write_text("on the host")
    code = "import os\n\ndef probe(path):\n    return {'sees_host_file': os.path.exists(path)}\n"
    body = request(
        [tool("probe", "Probe.", code, {"path": {"type": "string"}})],
        ("probe", {"path": str(marker)}),
    )
    settings = envhost_settings(sandbox=sandbox, allow_unsandboxed=sandbox == "none")
    async with envhost_client(settings) as client:
        result = await execute(client, body)
    # bubblewrap binds no host tree but the interpreter; the development mode runs on the host.
    assert result.outcomes[0].output == {"sees_host_file": sandbox == "none"}


async def test_writes_need_the_token(envhost_settings: Settings) -> None:
    body = request(weather_tools(), ("get_city_id", {"name": "Lyon"}))
    async with envhost_client(envhost_settings(api_token="s3cret")) as client:
        anonymous = await client.post("/v1/executions", json=body)
        wrong = await client.post(
            "/v1/executions", json=body, headers={"Authorization": "Bearer nope"}
        )
        right = await client.post(
            "/v1/executions", json=body, headers={"Authorization": "Bearer s3cret"}
        )
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert right.json()["outcomes"][0]["output"] == {"city_id": "c-69"}


async def test_malformed_requests_are_422(envhost_settings: Settings) -> None:
    good = request(weather_tools(), ("get_city_id", {"name": "Lyon"}))
    duplicated = {**good, "tools": [good["tools"][0], good["tools"][0]]}
    malformed: list[Any] = [
        {"tools": good["tools"]},  # no calls
        {**good, "calls": []},
        {**good, "tools": []},
        {**good, "calls": [{"tool_name": "get_city_id", "arguments": "Paris"}]},
        {**good, "extra": 1},
        {**good, "calls": good["calls"] * 257},
        [good],
    ]
    async with envhost_client(envhost_settings()) as client:
        for body in malformed:
            response = await client.post("/v1/executions", json=body)
            assert response.status_code == 422, (body, response.text)
        not_json = await client.post(
            "/v1/executions", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        response = await client.post("/v1/executions", json=duplicated)
    assert response.status_code == 422
    assert response.json()["detail"] == "tool names must be unique; repeated: get_city_id"


class GatedBackend:
    """A test double for the sandbox: each call waits until the test opens its gate."""

    def __init__(self, runner_state: dict[str, int], gate: asyncio.Event) -> None:
        self.state, self.gate = runner_state, gate
        self.state["open"] += 1
        self.state["most_open"] = max(self.state["most_open"], self.state["open"])

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        await self.gate.wait()
        return {"ok": True}

    async def close(self) -> None:
        self.state["open"] -= 1


async def test_concurrent_executions_are_bounded() -> None:
    state = {"open": 0, "most_open": 0}
    gate = asyncio.Event()
    runner = ExecutionRunner(lambda tools: GatedBackend(state, gate), max_concurrent=2)
    body = ExecutionRequest.model_validate(request(weather_tools(), ("get_city_id", {"name": "x"})))
    runs = [asyncio.create_task(runner.run(body)) for _ in range(5)]
    for _ in range(20):  # let every task reach the semaphore or the gate
        await asyncio.sleep(0)
    assert state["open"] == 2
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)
    assert [r.outcomes[0].output for r in results] == [{"ok": True}] * 5
    assert state == {"open": 0, "most_open": 2}
