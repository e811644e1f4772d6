"""Teacher runs over REST: a scripted teacher (the stub policy, a test double of an OpenAI
endpoint) plays tasks against a real envhost environment over MCP, and against a
document-only server whose calls go to the real synth emulator endpoint (its LLM is the
scripted chat double behind a fake OpenAI endpoint)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import envhost, register, weather_spec
from http_support import running
from rollout_stub_policy import ScriptedPolicy, stub_app
from scripted_chat import ScriptedChat
from scripted_llm import fake_openai
from synth_support import private_redis, silent_server, synth_service

from astra.redis_server import free_port
from astra_proto import Trajectory
from astra_proto.api.rollout import TeacherRunRequest
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings

pytestmark = pytest.mark.integration

WEATHER = weather_spec()


def emulate(payload: dict[str, Any]) -> dict[str, Any]:
    """The emulator's scripted LLM: plausible outputs, or the error it is asked to give."""
    if payload["fail"]:
        return {"error": f"{payload['call']['tool']} is temporarily unavailable"}
    if payload["call"]["tool"] == "get_city_id":
        return {"output": {"city_id": "emu-75"}}
    return {"output": {"temperature_c": 30, "condition": "emulated sun"}}


@dataclass
class Teach:
    http: httpx.AsyncClient
    envhost_url: str
    chat: ScriptedChat
    policy_url: str

    def body(self, **overrides: Any) -> dict[str, Any]:
        docs = {
            "name": "weather-docs",
            "description": "City ids and forecasts, known only by their documents.",
            "tools": [t.model_dump(mode="json") for t in WEATHER.tool_specs()],
        }
        real = {"name": "weather", "url": f"{self.envhost_url}/envs/{WEATHER.id}/mcp"}
        tasks = [
            {"id": "t-real", "question": "Weather in Paris?", "server": "weather"},
            {"id": "t-docs", "question": "Weather in Paris?", "server": "weather-docs"},
        ]
        body: dict[str, Any] = {
            "tasks": tasks,
            "servers": [real, docs],
            "policy": {"base_url": self.policy_url, "model": "solver"},
            "emulator": {"failure_rate": 0.0},
        }
        return body | overrides

    async def run(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[Trajectory]]:
        response = await self.http.post("/v1/teacher-runs", json=body)
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        async with asyncio.timeout(60):
            while True:
                status = (await self.http.get(f"/v1/teacher-runs/{run_id}")).json()
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.1)
        trajectories: list[Trajectory] = []
        offset: int | None = 0
        while offset is not None:
            page = (
                await self.http.get(
                    f"/v1/teacher-runs/{run_id}/trajectories", params={"offset": offset, "limit": 1}
                )
            ).json()
            trajectories += [Trajectory.model_validate(t) for t in page["items"]]
            offset = page["next_offset"]
        return status, trajectories


@asynccontextmanager
async def teaching(
    database_url: str,
    redis_url: str,
    envhost_settings: Any,
    tmp_path: Path,
    *,
    llm_up: bool = True,
) -> AsyncIterator[Teach]:
    await register(database_url, WEATHER)
    chat = ScriptedChat({"emulate": emulate})
    async with AsyncExitStack() as stack:
        enter = stack.enter_async_context
        llm_url = (
            await enter(running(fake_openai(chat, []), free_port()))
            if llm_up
            else f"http://127.0.0.1:{free_port()}"
        )
        envhost_url = await enter(envhost(envhost_settings(tool_timeout_s=10.0)))
        synth_url, _ = await enter(
            synth_service(
                database_url=database_url,
                redis_url=private_redis(redis_url),
                envhost_url=envhost_url,
                tmp_path=tmp_path,
                llm_base_url=f"{llm_url}/v1",
                llm_model="scripted",
                llm_max_retries=0,
            )
        )
        policy_url = await enter(running(stub_app(ScriptedPolicy()), free_port()))
        settings = RolloutSettings(
            port=free_port(),
            redis_url=private_redis(redis_url),
            envhost_url=envhost_url,
            synth_url=synth_url,
        )
        rollout_url = await enter(running(create_app(settings), settings.port))
        http = await enter(httpx.AsyncClient(base_url=rollout_url, timeout=60))
        yield Teach(http=http, envhost_url=envhost_url, chat=chat, policy_url=f"{policy_url}/v1")


async def test_teacher_plays_real_mcp_tools_and_emulated_documents(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    async with teaching(database_url, redis_url, envhost_settings, tmp_path) as t:
        status, trajectories = await t.run(t.body())
        assert status["state"] == "succeeded", status
        assert status["done"] == 2
        assert status["failed"] == 0
        assert status["finish_reasons"] == {"final_answer": 2}
        assert status["tool_calls"] == 4
        assert status["emulated_calls"] == 2
        by_task = {tr.metadata["task_id"]: tr for tr in trajectories}

        real = by_task["t-real"]
        assert real.metadata["tools_emulated"] is False
        outputs = [json.loads(m.content or "{}") for m in real.messages if m.role == "tool"]
        assert outputs[0] == {"city_id": "c-75"}  # the environment's own code ran
        assert outputs[1]["temperature_c"] == 21
        assert real.reward is None
        assert real.text_only
        assert {tool.name for tool in real.tools} == {"get_city_id", "get_forecast"}

        docs = by_task["t-docs"]
        assert docs.metadata["tools_emulated"] is True
        assert docs.metadata["emulated_calls"] == 2
        outputs = [json.loads(m.content or "{}") for m in docs.messages if m.role == "tool"]
        assert outputs == [
            {"city_id": "emu-75"},
            {"temperature_c": 30, "condition": "emulated sun"},
        ]
        # The emulator saw the definition, the server's description and the earlier call.
        first, second = [p for stage, p in t.chat.requests if stage == "emulate"]
        assert first["server_description"].startswith("City ids and forecasts")
        assert first["tool"]["name"] == "get_city_id"
        assert first["recent_calls"] == []
        assert second["call"] == {"tool": "get_forecast", "arguments": {"city_id": "emu-75"}}
        assert [c["tool"] for c in second["recent_calls"]] == ["get_city_id"]


async def test_failures_limits_and_bad_requests(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    async with teaching(database_url, redis_url, envhost_settings, tmp_path) as t:
        # Every emulated call fails on purpose: the teacher sees errors, the run goes on.
        body = t.body(emulator={"failure_rate": 1.0})
        body["tasks"] = body["tasks"][1:]
        status, (docs,) = await t.run(body)
        assert status["injected_failures"] == 2 == docs.metadata["injected_failures"]
        errors = [m.content for m in docs.messages if m.role == "tool"]
        assert errors[0] == "Error: get_city_id is temporarily unavailable"

        # The turn limit holds (default: 20 teacher calls, 240 s per trajectory).
        assert TeacherRunRequest.model_validate(t.body()).limits.max_turns == 20
        assert TeacherRunRequest.model_validate(t.body()).limits.timeout_s == 240
        endless = t.body(policy={"base_url": t.policy_url, "model": "endless"})
        endless["limits"] = {"max_turns": 3}
        status, trajectories = await t.run(endless)
        assert status["finish_reasons"] == {"turn_limit": 2}
        assert all(tr.turns == 3 for tr in trajectories)

        bad = [
            t.body(tasks=[{"id": "x", "question": "?", "server": "nowhere"}]),
            t.body(servers=[{"name": "weather-docs"}]),
            t.body(tasks=[]),
            t.body(emulator={"failure_rate": 2}),
        ]
        for request in bad:
            response = await t.http.post("/v1/teacher-runs", json=request)
            assert response.status_code == 422, response.text
        no_policy = t.body(policy={})
        response = await t.http.post("/v1/teacher-runs", json=no_policy)
        assert response.status_code == 422
        assert "policy" in response.json()["detail"]
        assert (await t.http.get("/v1/teacher-runs/teach_nope")).status_code == 404
        finished = (await t.http.get("/v1/teacher-runs")).json()[0]["id"]
        assert (await t.http.post(f"/v1/teacher-runs/{finished}/cancel")).status_code == 409


async def test_an_unreachable_emulator_llm_fails_that_trajectory_with_the_reason(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    async with teaching(database_url, redis_url, envhost_settings, tmp_path, llm_up=False) as t:
        status, trajectories = await t.run(t.body())
        assert status["state"] == "succeeded"
        assert status["failed"] == 1
        (failure,) = status["recent_failures"]
        assert failure["task_id"] == "t-docs"
        assert "emulator answered HTTP 502" in failure["reason"]
        real = next(tr for tr in trajectories if tr.metadata["task_id"] == "t-real")
        assert real.finish_reason.value == "final_answer"  # the other task is unaffected


async def test_a_tool_server_that_never_answers_cannot_hold_a_run_forever(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    async with (
        teaching(database_url, redis_url, envhost_settings, tmp_path) as t,
        silent_server() as hung_url,
    ):
        body = t.body(
            tasks=[{"id": "t-hung", "question": "Weather in Paris?", "server": "hung"}],
            servers=[{"name": "hung", "url": f"{hung_url}/mcp"}],
        )
        body["limits"] = {"timeout_s": 1}
        # The conversation's time limit does not cover opening the tool session; the
        # episode's hard deadline (1 s + 10 s of slack) does.
        status, (trajectory,) = await t.run(body)
        assert status["state"] == "succeeded", status
        assert status["failed"] == 1
        assert trajectory.finish_reason == "error"
        assert trajectory.failure_reason is not None
        assert "hard deadline of 11 s" in trajectory.failure_reason
        assert "hard deadline" in status["recent_failures"][0]["reason"]
