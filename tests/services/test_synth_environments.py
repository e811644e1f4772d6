"""The synth API's environment registry: register, list with filters, read."""

from __future__ import annotations

from pathlib import Path

import httpx
from test_apps import serve

from astra_common.db.migrate import upgrade_async
from astra_proto import EnvironmentSpec, Provenance, SubQuestion, SyntheticTool, ToolSpec
from astra_synth.app import create_app
from astra_synth.settings import SynthSettings


def spec(domain: str, hops: int) -> EnvironmentSpec:
    questions = [
        SubQuestion(
            id=f"q{i}",
            question=f"step {i}?",
            answer=str(i),
            depends_on=[f"q{i - 1}"] if i else [],
            tool_name="step",
        )
        for i in range(hops)
    ]
    tool = SyntheticTool(
        spec=ToolSpec(name="step", description="One step."),
        code="def step():\n    return {'ok': True}\n",
        entrypoint="step",
    )
    return EnvironmentSpec(
        task=f"A {hops}-hop task in {domain}.",
        domain=domain,
        sub_questions=questions,
        tools=[tool],
        provenance=Provenance(source="procedural", seed=hops),
    )


async def test_register_list_and_read(tmp_path: Path, redis_url: str) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    await upgrade_async(database_url)
    settings = SynthSettings(database_url=database_url, redis_url=redis_url, api_token="t")
    auth = {"Authorization": "Bearer t"}
    travel, finance = spec("travel", 3), spec("finance", 1)
    async with serve(create_app(settings)) as client:
        body = travel.model_dump(mode="json")
        assert (await client.post("/v1/environments", json=body)).status_code == 401
        first = await client.post("/v1/environments", json=body, headers=auth)
        assert first.status_code == 201
        assert first.json() == {"id": travel.id, "created": True}
        again = await client.post("/v1/environments", json=body, headers=auth)
        assert again.status_code == 200
        assert again.json()["created"] is False
        created = await client.post(
            "/v1/environments", json=finance.model_dump(mode="json"), headers=auth
        )
        assert created.status_code == 201

        forged = {**body, "task": "something else"}  # the id no longer matches the content
        rejected = await client.post("/v1/environments", json=forged, headers=auth)
        assert rejected.status_code == 422
        assert "content hash" in rejected.text

        page = (await client.get("/v1/environments")).json()
        assert page["total"] == 2
        deep = (await client.get("/v1/environments", params={"min_hops": 2})).json()
        assert [item["id"] for item in deep["items"]] == [travel.id]
        assert deep["items"][0]["hops"] == 3
        assert deep["items"][0]["source"] == "procedural"
        by_domain = (await client.get("/v1/environments", params={"domain": "finance"})).json()
        assert [item["id"] for item in by_domain["items"]] == [finance.id]
        bad_query = await client.get("/v1/environments", params={"limit": 0})
        assert bad_query.status_code == 422

        read = await client.get(f"/v1/environments/{travel.id}")
        assert EnvironmentSpec.model_validate(read.json()) == travel
        missing = await client.get("/v1/environments/env_nope")
        assert missing.status_code == 404
        assert "env_nope" in missing.json()["detail"]
        assert isinstance(missing, httpx.Response)
