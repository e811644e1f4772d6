"""Environment-synthesis jobs end to end: the REST API, a real Celery worker on a real Redis,
verification in envhost's sandbox, registration, and envhost serving what was registered."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import envhost
from mcp import Client
from synth_support import stage, synth_stack, wait_for_job

from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec
from astra_proto.answers import output_holds_answer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_bwrap() is None,
        reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap",
    ),
]

Settings = Callable[..., EnvhostSettings]


async def test_procedural_job_registers_certified_environments_that_envhost_serves(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    async with synth_stack(database_url, redis_url, tmp_path, envhost_settings) as s:
        http, workers, envhost_url = s.http, s.workers, s.envhost_url
        workers.start()
        response = await http.post(
            "/v1/jobs/environments", json={"count": 6, "seed": 11, "domains": ["travel", "finance"]}
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        assert response.json()["params"]["source"] == "procedural"

        job = await wait_for_job(http, job_id)
        assert job["state"] == "succeeded", (job, workers.logs())
        assert stage(job, "generated") == {
            "stage": "generated",
            "done": 6,
            "total": 6,
            "rejected": {},
        }
        assert stage(job, "verified")["done"] == 6
        assert stage(job, "registered")["done"] == 6
        assert job["finished_at"] is not None

        stats = (await http.get(f"/v1/jobs/{job_id}/stats")).json()["stats"]
        assert stats["registered"] == 6
        assert set(stats["domains"]) == {"travel", "finance"}
        assert sum(stats["hops"].values()) == 6
        assert sum(stats["scenario_types"].values()) == 6
        assert stats["rejected"] == {}

        listed = (await http.get("/v1/environments", params={"job_id": job_id})).json()
        assert listed["total"] == 6
        spec = EnvironmentSpec.model_validate(
            (await http.get(f"/v1/environments/{listed['items'][0]['id']}")).json()
        )
        assert spec.certificate is not None
        assert spec.certificate.passed
        assert spec.provenance is not None
        assert spec.provenance.job_id == job_id

        verified = await http.post(f"/v1/environments/{spec.id}/verify")
        assert verified.status_code == 200, verified.text
        assert verified.json() == {
            "env_id": spec.id,
            "holds": True,
            "replays": len(spec.certificate.replays),
            "problems": [],
        }

        # envhost serves the new environment to any MCP client, with no restart.
        replay = spec.certificate.replays[0]
        async with Client(f"{envhost_url}/envs/{spec.id}/mcp") as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == set(spec.tool_names())
            result = await client.call_tool(replay.call.tool_name, dict(replay.call.arguments))
        assert not result.is_error
        assert replay.call.expected_answer is not None
        assert output_holds_answer(result.structured_content, replay.call.expected_answer)

        jobs = (await http.get("/v1/jobs")).json()["items"]
        assert [j["id"] for j in jobs] == [job_id]

        # The same request again: nothing new is registered, yet the job lists what it made.
        body = {"count": 6, "seed": 11, "domains": ["travel", "finance"]}
        again = (await http.post("/v1/jobs/environments", json=body)).json()["id"]
        repeat = await wait_for_job(http, again)
        assert repeat["state"] == "succeeded"
        assert repeat["result"]["duplicates"] == 6
        relisted = (await http.get("/v1/environments", params={"job_id": again})).json()
        assert relisted["total"] == 6


async def test_cancel_stops_a_running_job(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    async with synth_stack(database_url, redis_url, tmp_path, envhost_settings) as s:
        http, workers = s.http, s.workers
        workers.start()
        job_id = (
            await http.post("/v1/jobs/environments", json={"count": 5000, "concurrency": 1})
        ).json()["id"]
        await wait_for_job(http, job_id, until=lambda j: stage(j, "registered")["done"] >= 2)
        cancelled = await http.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        again = await http.post(f"/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert "cancelled" in again.json()["detail"]

        # The worker notices at its next progress write and stops: registrations stop growing.
        async def registered() -> int:
            listed = (await http.get("/v1/environments", params={"job_id": job_id})).json()
            return int(listed["total"])

        await asyncio.sleep(2)
        settled = await registered()
        await asyncio.sleep(2)
        assert await registered() == settled < 5000
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        assert job["state"] == "cancelled"


async def test_a_job_survives_its_worker_being_killed(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    count = 30
    async with synth_stack(
        database_url,
        redis_url,
        tmp_path,
        envhost_settings,
        job_visibility_timeout_s=3,
        job_lease_s=4,
        job_heartbeat_s=1,
    ) as s:
        http, workers = s.http, s.workers
        first = workers.start()
        job_id = (
            await http.post(
                "/v1/jobs/environments", json={"count": count, "seed": 5, "concurrency": 1}
            )
        ).json()["id"]
        await wait_for_job(http, job_id, until=lambda j: stage(j, "registered")["done"] >= 3)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # The unacknowledged job is delivered again (or queued again once its lease ran out)
        # and runs from the start.
        workers.start()

        job = await wait_for_job(http, job_id, timeout_s=150)
        assert job["state"] == "succeeded", (job, workers.logs())
        listed = (await http.get("/v1/environments", params={"job_id": job_id})).json()
        assert listed["total"] == count  # every environment once, none lost, none twice
        assert job["result"]["registered"] == count
        assert job["result"]["duplicates"] >= 3  # registered before the crash, found again


async def test_bad_requests_are_refused_with_reasons(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with synth_stack(
        database_url, redis_url, tmp_path, envhost_url="http://127.0.0.1:9"
    ) as s:
        http = s.http

        async def start(body: dict[str, Any]) -> httpx.Response:
            return await http.post("/v1/jobs/environments", json=body)

        unknown = await start({"count": 3, "colour": "blue"})
        assert unknown.status_code == 422
        assert "colour" in unknown.text
        assert (await start({"count": 0})).status_code == 422
        hops = await start({"hops": [0, 3]})
        assert hops.status_code == 422
        assert "between 1 and 20" in hops.text
        unsuited = await start({"hops": [3], "scenario_types": ["single_hop"]})
        assert unsuited.status_code == 422
        assert "no hop count in [3] suits scenario type(s) ['single_hop']" in unsuited.text
        assert "choose among" in unsuited.text
        no_llm = await start({"source": "qa", "qa_jsonl": '{"question": "q", "answer": "a"}'})
        assert no_llm.status_code == 422
        assert "needs an LLM endpoint" in no_llm.json()["detail"]
        huge = await start({"source": "qa", "qa_jsonl": "x" * 7_000_000})
        assert huge.status_code == 413
        assert "exceeds" in huge.json()["detail"]
        missing = await http.get("/v1/jobs/job_nope")
        assert missing.status_code == 404
        assert "job_nope" in missing.json()["detail"]
        assert (await http.post("/v1/jobs/job_nope/cancel")).status_code == 404
        assert (await http.get("/v1/jobs", params={"state": "sleeping"})).status_code == 422
        assert (await http.get("/v1/jobs")).json()["items"] == []  # nothing was created


async def test_verify_reports_a_tampered_certificate_and_unreachable_envhost(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    from envhost_support import register

    from astra_synth.procedural import attach_certificate, generate_environments

    spec = generate_environments(1, 3)[0]
    async with envhost(envhost_settings()) as envhost_url:
        from astra_synth.jobs.executor import EnvironmentExecutor
        from astra_synth.procedural import certificate_from_outcomes, reference_calls

        async with EnvironmentExecutor(envhost_url) as executor:
            outcomes = await executor.replay(spec.tools, reference_calls(spec))
        good = attach_certificate(spec, certificate_from_outcomes(spec, outcomes))
        assert good.certificate is not None
        assert good.certificate.passed
        first = good.certificate.replays[0]
        forged = first.model_copy(update={"output": {"forged": True}})
        tampered = attach_certificate(
            spec,
            good.certificate.model_copy(
                update={"replays": [forged, *good.certificate.replays[1:]]}
            ),
        )
        other = generate_environments(2, 3)[1]
        other_outcomes = []
        async with EnvironmentExecutor(envhost_url) as executor:
            other_outcomes = await executor.replay(other.tools, reference_calls(other))
        await register(
            database_url,
            tampered,
            attach_certificate(other, certificate_from_outcomes(other, other_outcomes)),
        )
        async with synth_stack(database_url, redis_url, tmp_path, envhost_url=envhost_url) as s:
            http = s.http
            report = (await http.post(f"/v1/environments/{spec.id}/verify")).json()
            assert report["holds"] is False
            assert any("does not match its recorded hash" in p for p in report["problems"])
            assert (await http.post("/v1/environments/env_missing/verify")).status_code == 404
    async with synth_stack(
        database_url, redis_url, tmp_path, envhost_url="http://127.0.0.1:9"
    ) as s:
        http = s.http
        down = await http.post(f"/v1/environments/{other.id}/verify")
        assert down.status_code == 503
        assert "cannot reach envhost" in down.json()["detail"]
