"""BFCL import as an environment job: envhost serves the specs (``GET
/v1/bfcl/environments``), synth's ``bfcl`` source fetches them and a real Celery worker
registers them, with the job's counters, rejections and result as for any other source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from envhost_support import envhost
from synth_support import stage, synth_stack, wait_for_job

from astra_envhost.bfcl import bfcl_environments
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
]

Settings = Callable[..., EnvhostSettings]


@pytest.fixture
def unsandboxed(envhost_settings: Settings) -> Settings:
    """envhost without a sandbox: BFCL runs on its own backends, no synthesized code runs."""
    return lambda **overrides: envhost_settings(
        **({"sandbox": "none", "allow_unsandboxed": True} | overrides)
    )


async def test_envhost_serves_the_bfcl_specs_of_a_selection(unsandboxed: Settings) -> None:
    async with (
        envhost(unsandboxed()) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        response = await http.get(
            "/v1/bfcl/environments", params={"category": ["base", "miss_func"], "limit": 2}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        specs = [EnvironmentSpec.model_validate(item) for item in page["items"]]
        assert specs == bfcl_environments(["base", "miss_func"], 2, None)
        assert (page["total"], page["offset"]) == (4, 0)
        # pages of a larger selection cover it once, in order, each answer bounded
        everything = bfcl_environments(["base"], 45, None)
        paged: list[str] = []
        while len(paged) < len(everything):
            params: dict[str, str | int] = {"category": "base", "limit": 45, "offset": len(paged)}
            answer = await http.get("/v1/bfcl/environments", params=params)
            assert answer.status_code == 200, answer.text
            assert len(answer.content) < 1024 * 1024
            assert answer.json()["total"] == 45
            paged += [item["id"] for item in answer.json()["items"]]
        assert paged == [spec.id for spec in everything]
        assert [spec.split for spec in specs] == ["multi_turn_base"] * 2 + [
            "multi_turn_miss_func"
        ] * 2

        wanted = ["multi_turn_long_context_7", "multi_turn_base_3"]
        response = await http.get("/v1/bfcl/environments", params={"entry": wanted})
        assert [s["builtin"]["config"]["entry_id"] for s in response.json()["items"]] == wanted

        refused = await http.get("/v1/bfcl/environments", params={"category": "nonsense"})
        assert refused.status_code == 422
        assert "unknown BFCL category 'nonsense'" in refused.json()["detail"]
        refused = await http.get("/v1/bfcl/environments", params={"entry": "multi_turn_base_9999"})
        assert refused.status_code == 422
        assert "unknown BFCL entry ids" in refused.json()["detail"]


async def test_bfcl_job_registers_the_entries_envhost_serves(
    database_url: str, redis_url: str, unsandboxed: Settings, tmp_path: Path
) -> None:
    async with synth_stack(database_url, redis_url, tmp_path, unsandboxed) as s:
        http, workers = s.http, s.workers
        workers.start()
        body = {"source": "bfcl", "bfcl": {"categories": ["base"], "limit": 3}}
        started = await http.post("/v1/jobs/environments", json=body)
        assert started.status_code == 201, started.text
        assert started.json()["params"]["source"] == "bfcl"
        job = await wait_for_job(http, started.json()["id"])
        assert job["state"] == "succeeded", (job, workers.logs())
        assert [p["stage"] for p in job["progress"]] == ["fetched", "registered"]
        assert stage(job, "fetched") == {"stage": "fetched", "done": 3, "total": 3, "rejected": {}}
        assert stage(job, "registered")["done"] == 3
        assert job["result"]["registered"] == 3
        assert job["result"]["duplicates"] == 0
        assert job["result"]["splits"] == {"multi_turn_base": 3}

        page = (await http.get("/v1/environments", params={"source": "bfcl"})).json()
        expected = {spec.id for spec in bfcl_environments(["base"], 3, None)}
        assert {item["id"] for item in page["items"]} == expected
        linked = (await http.get("/v1/environments", params={"job_id": job["id"]})).json()
        assert linked["total"] == 3

        # The same selection again: nothing new, every entry counted as already there.
        again = await http.post("/v1/jobs/environments", json=body)
        job = await wait_for_job(http, again.json()["id"])
        assert job["state"] == "succeeded"
        assert (job["result"]["registered"], job["result"]["duplicates"]) == (3, 3)

        # envhost's refusal is the job's reason, and the job fails.
        bad = {"bfcl": {"categories": ["nonsense"]}}
        refused = await http.post("/v1/jobs/environments", json=bad)
        assert refused.json()["params"]["source"] == "bfcl"
        job = await wait_for_job(http, refused.json()["id"])
        assert job["state"] == "failed"
        assert "unknown BFCL category 'nonsense'" in job["error"]


async def test_a_bfcl_request_takes_no_other_inputs(
    database_url: str, redis_url: str, unsandboxed: Settings, tmp_path: Path
) -> None:
    async with synth_stack(database_url, redis_url, tmp_path, unsandboxed) as s:
        mixed = {"source": "bfcl", "qa_jsonl": '{"question": "q", "answer": "a"}'}
        assert (await s.http.post("/v1/jobs/environments", json=mixed)).status_code == 422
        wrong = {"source": "procedural", "bfcl": {"limit": 1}}
        assert (await s.http.post("/v1/jobs/environments", json=wrong)).status_code == 422
        negative = {"source": "bfcl", "bfcl": {"limit": -1}}
        assert (await s.http.post("/v1/jobs/environments", json=negative)).status_code == 422
