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
from cli_support import astra
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
    script = freedonia_script()
    chatty = "Sure! Here is how I would split that question up."  # not the JSON asked for
    script[("decompose", "Is Fredville rainy?")] = [chatty]
    llm = fake_openai(ScriptedLLM(script), requests)
    qa_jsonl = "\n".join(
        [
            FREEDONIA.model_dump_json(exclude_none=True),
            "{not json",
            json.dumps({"question": "Who?"}),  # no answer
            json.dumps({"question": "Is Fredville rainy?", "answer": "yes"}),
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
        assert stage(job, "decomposed")["rejected"] == {
            "malformed_line": 2,
            "unparseable_decomposition": 1,
        }
        assert stage(job, "decomposed")["total"] == 4  # every line is an item
        for name in ("decomposed", "passed_quality", "tools_verified", "merged", "registered"):
            progress = stage(job, name)
            assert progress["done"] == 1, (name, job["progress"])
            assert progress["done"] + sum(progress["rejected"].values()) <= progress["total"]
        assert [e["line"] for e in job["result"]["line_errors"]] == [2, 3]
        assert job["result"]["registered"] == 1
        usage = job["result"]["llm_usage"]
        assert usage["calls"] == len(requests) > 0
        assert usage["by_stage"]["decomposed"] == 2  # one per well-formed line
        assert sum(usage["by_stage"].values()) == len(requests)

        # Every rejection can be read: which item, at which stage, why, and the reply.
        page = (await http.get(f"/v1/jobs/{job_id}/rejections")).json()
        assert page["total"] == 3
        by_reason = {r["reason"]: r for r in page["items"]}
        assert by_reason.keys() == {"malformed_line", "unparseable_decomposition"}
        unparseable = by_reason["unparseable_decomposition"]
        assert unparseable["stage"] == "decomposed"
        assert "Is Fredville rainy?" in unparseable["item"]
        assert "not JSON" in unparseable["message"]
        assert unparseable["excerpt"] == chatty
        lines = (
            await http.get(f"/v1/jobs/{job_id}/rejections", params={"reason": "malformed_line"})
        ).json()
        assert [r["item"] for r in lines["items"]] == ["line 2", "line 3"]
        assert (await http.get("/v1/jobs/job_nope/rejections")).status_code == 404
        assert f"job {job_id} rejected" in workers.logs()  # each one is logged by the worker

        # The CLI says why: reasons with counts, and examples with the model's reply.
        code, out, err = await astra("synth", "show", job_id, "--synth-url", synth_url)
        assert code == 0, err
        assert "3 rejected:" in out
        assert "2 x malformed_line (at decomposed)" in out
        assert "1 x unparseable_decomposition (at decomposed)" in out
        assert chatty in out
        code, out, err = await astra("synth", "rejections", job_id, "--synth-url", synth_url)
        assert code == 0, err
        assert "3 of 3 rejections" in out
        assert "unparseable_decomposition" in out

        # `astra synth run` ends with the same account of what it rejected and why.
        qa_file = tmp_path / "rainy.jsonl"
        qa_file.write_text(json.dumps({"question": "Is Fredville rainy?", "answer": "yes"}))
        code, out, err = await astra(
            "synth", "run", "--source", "qa", "--qa", str(qa_file), "--synth-url", synth_url
        )
        assert code == 0, err
        assert "0 environments registered" in out
        assert "1 rejected:" in out
        assert "1 x unparseable_decomposition (at decomposed)" in out
        assert "item 0: Is Fredville rainy?" in out
        assert chatty in out

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
