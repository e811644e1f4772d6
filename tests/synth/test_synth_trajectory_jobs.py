"""Tasks and teacher-trajectory jobs end to end: a toolset of a real envhost environment (MCP)
and a document-only server; a tasks job; a trajectory job on a real Celery worker that has the
real rollout service play the tasks with a teacher (the scripted stub policy, a test double of
an OpenAI endpoint), the document-only tools answered by synth's emulator, judged, exported and
downloaded. The synth LLM is the scripted chat double behind a fake OpenAI endpoint."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from envhost_support import envhost, register, weather_spec
from http_support import running
from rollout_stub_policy import ScriptedPolicy, stub_app
from scripted_chat import ScriptedChat
from scripted_llm import fake_openai
from synth_support import private_redis, silent_server, stage, synth_stack, wait_for_job
from typer.testing import CliRunner, Result

from astra.cli_synth import synth_app
from astra.redis_server import free_port
from astra_envhost.sandbox import find_bwrap
from astra_rollout.app import create_app as create_rollout_app
from astra_rollout.settings import RolloutSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]

WEATHER = weather_spec()
CHAIN = ["get_city_id", "get_forecast"]


def user_text(payload: dict[str, Any]) -> str:
    return str(next(m["content"] for m in payload["messages"] if m["role"] == "user"))


def judge(payload: dict[str, Any]) -> str | dict[str, Any]:
    """Emulated trajectories grade low; the augmented real one gets a malformed reply."""
    emulated = any("emu-75" in (m["content"] or "") for m in payload["messages"])
    if not emulated and user_text(payload).endswith("Please be brief."):
        return "I would rate this highly."  # malformed on purpose: a judge error rejects
    grade = 0.0 if emulated else 1.0
    return {
        "query_understanding": 1,
        "planning": grade,
        "tool_output_understanding": grade,
        "replanning": 1,
        "call_success": grade,
        "call_necessity": 1,
        "final_answer": grade,
        "notes": "scripted",
    }


SCRIPT: dict[str, Any] = {
    "propose": lambda p: {"proposals": [{"task": "Forecast for Paris", "chain": CHAIN}]},
    "coherence": lambda p: {"coherent": True},
    "chain_to_query": lambda p: {"query": "What is the forecast for Paris?"},
    "query_to_chain": lambda p: {"chain": CHAIN},
    "server_tasks": lambda p: {"tasks": ["What is the weather like in Paris today?"]},
    "augment": lambda p: {"task": p["task"] + " Please be brief."},
    "task_quality": lambda p: {
        "question_quality": 5,
        "realism": 5,
        "tool_necessity": 5,
        "keeps_intent": None if p["original"] is None else True,
        "same_language": None if p["original"] is None else True,
    },
    "emulate": lambda p: (
        {"output": {"city_id": "emu-75"}}
        if p["call"]["tool"] == "get_city_id"
        else {"output": {"temperature_c": 30, "condition": "sunny"}}
    ),
    "judge": judge,
}


async def test_tasks_then_teacher_trajectories_judged_and_exported(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    await register(database_url, WEATHER)
    chat = ScriptedChat(dict(SCRIPT))
    rollout_port = free_port()
    async with (
        running(fake_openai(chat, []), free_port()) as llm_url,
        running(stub_app(ScriptedPolicy()), free_port()) as policy_url,
        envhost(envhost_settings(tool_timeout_s=10.0)) as envhost_url,
        synth_stack(
            database_url,
            redis_url,
            tmp_path,
            envhost_url=envhost_url,
            llm_base_url=f"{llm_url}/v1",
            llm_model="scripted",
            llm_max_retries=0,
            rollout_url=f"http://127.0.0.1:{rollout_port}",
        ) as s,
        running(
            create_rollout_app(
                RolloutSettings(
                    port=rollout_port,
                    redis_url=private_redis(redis_url),
                    envhost_url=envhost_url,
                    synth_url=s.url,
                )
            ),
            rollout_port,
        ),
    ):
        http = s.http
        settings = {"min_tools_per_server": 2, "augmentations": ["diverse"]}
        docs_tools = [t.to_openai() for t in WEATHER.tool_specs()]
        toolset: dict[str, Any] = {
            "id": "wx",
            "mcp": [{"url": f"{envhost_url}/envs/{WEATHER.id}/mcp", "name": "weather"}],
            "json_tools": [
                {
                    "name": "weather-docs",
                    "description": "City ids and forecasts, known by their documents only.",
                    "tools": docs_tools,
                }
            ],
            "settings": settings,
        }
        response = await http.post("/v1/toolsets", json=toolset)
        assert response.status_code == 201, response.text
        teacher = {"base_url": f"{policy_url}/v1", "model": "solver"}

        # Bad requests are refused before anything is queued.
        stored = {"toolset_id": "wx", "teacher": teacher, "tasks": "stored"}
        response = await http.post("/v1/jobs/trajectories", json=stored)
        assert response.status_code == 409
        assert "no stored tasks" in response.json()["detail"]
        unknown = await http.post("/v1/jobs/tasks", json={"toolset_id": "nope"})
        assert unknown.status_code == 404
        no_teacher = await http.post("/v1/jobs/trajectories", json={"toolset_id": "wx"})
        assert no_teacher.status_code == 422

        async def cli(*args: str) -> Result:  # the CLI blocks: it runs beside the servers
            return await asyncio.to_thread(
                CliRunner().invoke, synth_app, [*args, "--synth-url", s.url]
            )

        docs = tmp_path / "docs-weather.json"
        docs.write_text(json.dumps(docs_tools))
        registered = await cli("toolset", "docs", "--json-tools", str(docs), "--min-tools", "2")
        assert registered.exit_code == 0, registered.output
        assert "docs-weather" in registered.output
        missing = await cli("tasks", "nope")
        assert missing.exit_code == 1
        assert "no toolset 'nope'" in missing.output

        s.workers.start()
        response = await http.post(
            "/v1/jobs/tasks", json={"toolset_id": "wx", "settings": settings}
        )
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == "tasks"
        tasks_job = await wait_for_job(http, response.json()["id"])
        assert tasks_job["state"] == "succeeded", (tasks_job, s.workers.logs())
        # Per server: the chain's task, one server task, and a rewording of each.
        assert tasks_job["result"]["tasks"]["tasks"] == 8
        assert tasks_job["result"]["tasks"]["by_origin"] == {"chain": 2, "server": 2, "augment": 4}
        assert stage(tasks_job, "graph")["done"] == 2
        for progress in tasks_job["progress"]:  # counts are consistent in every stage
            assert progress["total"] is not None, progress
            assert progress["done"] + sum(progress["rejected"].values()) <= progress["total"]
        assert stage(tasks_job, "tasks")["done"] == 8
        assert tasks_job["result"]["task_llm_usage"]["by_stage"]["task_quality"] > 0

        response = await http.post(
            "/v1/jobs/trajectories",
            json=stored | {"name": "teacher-test", "emulator_failure_rate": 0.0},
        )
        assert response.status_code == 201, response.text
        job = await wait_for_job(http, response.json()["id"], timeout_s=180)
        assert job["state"] == "succeeded", (job, s.workers.logs())
        assert stage(job, "trajectories")["done"] == 8
        assert job["result"]["teacher"]["finish_reasons"] == {"final_answer": 8}
        assert job["result"]["teacher"]["emulated_calls"] == 8  # two calls in each docs task
        assert stage(job, "judged")["rejected"] == {"below_cutoff": 4, "judge_error": 2}
        assert job["result"]["judge_llm_usage"]["by_stage"] == {"judge": 8}
        # Each judge drop can be read: which trajectory, and why.
        drops = (
            await http.get(f"/v1/jobs/{job['id']}/rejections", params={"stage": "judged"})
        ).json()
        assert drops["total"] == 6
        assert {r["reason"] for r in drops["items"]} == {"below_cutoff", "judge_error"}
        below = next(r for r in drops["items"] if r["reason"] == "below_cutoff")
        assert below["item"]  # the trajectory's id
        assert "cutoff" in below["message"]
        assert stage(job, "exported")["done"] == 2
        judged = job["result"]["judge"]
        assert judged["graded"] == 6
        assert judged["dimensions"]["planning"]["counts"] == {"0.0": 4, "1.0": 2}
        # The four document-only trajectories make the same calls with the same recent calls:
        # the LLM cache answers repeats, so 2 to 8 of them reach the LLM, by timing.
        emulate_calls = [p for stage_, p in chat.requests if stage_ == "emulate"]
        assert 2 <= len(emulate_calls) <= 8
        assert emulate_calls[0]["server"] == "weather-docs"

        manifest = (await http.get("/v1/datasets/teacher-test")).json()
        assert manifest["stats"]["records"] == 2
        assert manifest["metadata"]["teacher"] == "solver"
        lines = (await http.get("/v1/datasets/teacher-test/files/jsonl/train.jsonl")).text
        row, _ = [json.loads(line) for line in lines.splitlines()]
        assert row["domain"] == "weather"
        assert row["source"] == "teacher"
        assert row["score"] == 1.0
        assert json.loads(row["metadata"])["tools_emulated"] is False
        tool_outputs = [m["content"] for m in row["messages"] if m["role"] == "tool"]
        assert json.loads(tool_outputs[0]) == {"city_id": "c-75"}  # the real tool ran
        assert row["messages"][-1]["content"] == "It will be 21 degrees."


async def test_a_job_whose_teacher_run_was_lost_in_a_rollout_restart_fails_saying_so(
    database_url: str, redis_url: str, envhost_settings: Any, tmp_path: Path
) -> None:
    await register(database_url, WEATHER)
    rollout_port = free_port()
    async with (
        running(fake_openai(ScriptedChat(dict(SCRIPT)), []), free_port()) as llm_url,
        silent_server() as silent_policy,  # the teacher never answers: the run stays running
        envhost(envhost_settings(tool_timeout_s=10.0)) as envhost_url,
        synth_stack(
            database_url,
            redis_url,
            tmp_path,
            envhost_url=envhost_url,
            llm_base_url=f"{llm_url}/v1",
            llm_model="scripted",
            llm_max_retries=0,
            rollout_url=f"http://127.0.0.1:{rollout_port}",
        ) as s,
        AsyncExitStack() as first_rollout,
    ):

        def rollout_app() -> Any:
            return create_rollout_app(
                RolloutSettings(
                    port=rollout_port,
                    redis_url=private_redis(redis_url),
                    envhost_url=envhost_url,
                    synth_url=s.url,
                )
            )

        await first_rollout.enter_async_context(running(rollout_app(), rollout_port))
        toolset = {
            "id": "wx",
            "mcp": [{"url": f"{envhost_url}/envs/{WEATHER.id}/mcp", "name": "weather"}],
            "settings": {"min_tools_per_server": 2, "augmentations": []},
        }
        assert (await s.http.post("/v1/toolsets", json=toolset)).status_code == 201
        s.workers.start()
        body = {
            "toolset_id": "wx",
            "teacher": {"base_url": f"{silent_policy}/v1", "model": "solver"},
            "task_settings": {"min_tools_per_server": 2, "augmentations": []},
        }
        response = await s.http.post("/v1/jobs/trajectories", json=body)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        await wait_for_job(s.http, job_id, until=lambda j: "teacher_run" in j["result"])

        await first_rollout.aclose()  # the rollout process goes away with its runs
        async with running(rollout_app(), rollout_port):  # and comes back empty
            job = await wait_for_job(s.http, job_id, timeout_s=120)
        assert job["state"] == "failed", job
        assert "no longer knows teacher run" in job["error"]
        assert "restarted" in job["error"]
