"""LLM environment-synthesis jobs end to end: the REST API, a real Celery worker, an
OpenAI-compatible endpoint (a local fake answering from the scripted LLM test double),
verification in envhost's sandbox, registration, and the failure of an unreachable LLM."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import envhost
from http_support import running
from scripted_llm import FREEDONIA, ScriptedLLM, fake_openai, freedonia_script
from synth_support import private_redis, stage, synth_service, wait_for_job

from astra.redis_server import free_port
from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]

Settings = Callable[..., EnvhostSettings]


async def test_qa_job_registers_what_passes_and_reports_malformed_lines(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    requests: list[dict[str, Any]] = []
    llm = fake_openai(ScriptedLLM(freedonia_script()), requests)
    qa_jsonl = "\n".join(
        [
            FREEDONIA.model_dump_json(exclude_none=True),
            "{not json",
            json.dumps({"question": "Who?"}),  # no answer
        ]
    )
    async with (
        running(llm, free_port()) as llm_url,
        envhost(envhost_settings()) as envhost_url,
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url=envhost_url,
            tmp_path=tmp_path,
            llm_base_url=f"{llm_url}/v1",
            llm_model="scripted",
        ) as (synth_url, workers),
        httpx.AsyncClient(base_url=synth_url, timeout=30) as http,
    ):
        workers.start()
        response = await http.post("/v1/jobs/environments", json={"qa_jsonl": qa_jsonl})
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        assert response.json()["params"]["source"] == "qa"

        job = await wait_for_job(http, job_id)
        assert job["state"] == "succeeded", (job, workers.logs())
        assert stage(job, "decomposed")["rejected"] == {"malformed_line": 2}
        for name in ("decomposed", "passed_quality", "tools_verified", "merged", "registered"):
            assert stage(job, name)["done"] == 1, (name, job["progress"])
        assert [e["line"] for e in job["result"]["line_errors"]] == [2, 3]
        assert job["result"]["registered"] == 1
        assert job["result"]["llm_usage"]["calls"] == len(requests) > 0

        listed = (await http.get("/v1/environments", params={"job_id": job_id})).json()
        assert listed["total"] == 1
        spec = EnvironmentSpec.model_validate(
            (await http.get(f"/v1/environments/{listed['items'][0]['id']}")).json()
        )
        assert spec.task == FREEDONIA.question
        assert spec.certificate is not None
        assert spec.certificate.passed
        verified = (await http.post(f"/v1/environments/{spec.id}/verify")).json()
        assert verified["holds"] is True, verified


async def test_an_unreachable_llm_fails_the_job_with_the_reason(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with (
        envhost(envhost_settings()) as envhost_url,
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url=envhost_url,
            tmp_path=tmp_path,
            llm_max_retries=1,
        ) as (synth_url, workers),
        httpx.AsyncClient(base_url=synth_url, timeout=30) as http,
    ):
        workers.start()
        body = {"qa_jsonl": FREEDONIA.model_dump_json(), "llm_base_url": dead, "llm_model": "m"}
        job_id = (await http.post("/v1/jobs/environments", json=body)).json()["id"]
        job = await wait_for_job(http, job_id)
        assert job["state"] == "failed", (job, workers.logs())
        assert "LLMUnavailable" in job["error"]
        assert dead.removesuffix("/v1") in job["error"]
        assert "failed 2 attempts" in job["error"]  # the first and one retry
