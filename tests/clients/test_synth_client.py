"""``SynthClient`` against the real synth app over HTTP: the registry, jobs (queued on a real
Redis, no worker), datasets with their files streamed, toolsets and the tool emulator (a
scripted LLM behind an OpenAI-compatible endpoint); the service's 4xx messages reaching
``ServiceError``, a missing token, and a URL where nothing listens."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from http_support import running
from scripted_chat import ScriptedChat
from scripted_llm import fake_openai
from service_apps import build_service_apps
from synth_support import private_redis, synth_service
from test_traj_judge import trajectory

from astra.redis_server import free_port
from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.synth import SynthClient
from astra_proto import JobKind, JobState, ScenarioType, ToolSpec
from astra_proto.api.synth import (
    DatasetJobRequest,
    DatasetUpload,
    EmulatedServer,
    EmulateRequest,
    EnvironmentJobRequest,
    EnvironmentQuery,
    JsonToolsSource,
    PastCall,
    TaskJobRequest,
    ToolsetRequest,
    TrajectorySettings,
)
from astra_synth.procedural import generate_environments

pytestmark = pytest.mark.timeout(120)

TOKEN = "synth-test-token"


def emulate(payload: dict[str, Any]) -> dict[str, Any]:
    """The emulator's scripted LLM: a forecast, naming the call it answers."""
    return {"output": {"forecast": "sun", "tool": payload["call"]["tool"]}}


def names(folder: Path) -> list[str]:
    """The names in ``folder``, sorted."""
    return sorted(path.name for path in folder.iterdir())


@asynccontextmanager
async def synth(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A synth API with a token, a private Redis database, no envhost behind it, and a
    scripted LLM for its emulator; its URL."""
    async with AsyncExitStack() as stack:
        llm_url = await stack.enter_async_context(
            running(fake_openai(ScriptedChat({"emulate": emulate}), []), free_port())
        )
        url, _ = await stack.enter_async_context(
            synth_service(
                database_url=database_url,
                redis_url=private_redis(redis_url),
                envhost_url=f"http://127.0.0.1:{free_port()}",
                tmp_path=tmp_path,
                api_token=TOKEN,
                llm_base_url=f"{llm_url}/v1",
                llm_model="scripted",
                llm_max_retries=0,
            )
        )
        yield url


async def test_registry_and_jobs(database_url: str, redis_url: str, tmp_path: Path) -> None:
    specs = generate_environments(3, 5, hops=[1, 2], split="train")
    async with (
        synth(database_url, redis_url, tmp_path) as url,
        SynthClient(url, token=TOKEN) as client,
    ):
        assert (await client.workers()).count == 0
        registered = [await client.register_environment(spec) for spec in specs]
        assert [r.created for r in registered] == [True, True, True]
        again = await client.register_environment(specs[0])
        assert (again.id, again.created) == (specs[0].id, False)

        page = await client.list_environments(EnvironmentQuery(split="train"), limit=2)
        assert page.total == 3
        assert len(page.items) == 2
        assert {item.id for item in page.items} <= {spec.id for spec in specs}
        assert (
            await client.list_environments(EnvironmentQuery(split="heldout_entities"))
        ).total == 0
        assert len(await client.environment_ids(limit=2)) == 2
        assert sorted(await client.environment_ids(limit=10)) == sorted(s.id for s in specs)
        assert await client.environment_ids(limit=10, offset=2) != []
        assert await client.get_environment(specs[1].id) == specs[1]
        with pytest.raises(ServiceError, match="carries no certificate") as uncertified:
            await client.verify_environment(specs[0].id)
        assert uncertified.value.status == 422

        job = await client.start_job(EnvironmentJobRequest(count=2, seed=1, hops=[1, 2]))
        assert (job.kind, job.state, job.params["source"]) == (
            JobKind.ENVIRONMENTS,
            JobState.PENDING,
            "procedural",
        )
        dataset_job = await client.start_job(DatasetJobRequest(name="gold-1", job_id=job.id))
        assert dataset_job.kind == JobKind.TRAJECTORIES
        assert (await client.get_job(job.id)).id == job.id
        listed = await client.list_jobs(kind=JobKind.ENVIRONMENTS)
        assert [j.id for j in listed.items] == [job.id]
        assert [j.id for j in (await client.list_jobs(limit=1)).items] == [dataset_job.id]
        stats = await client.job_stats(job.id)
        assert (stats.job_id, stats.state) == (job.id, JobState.PENDING)
        rejections = await client.job_rejections(job.id, stage="generated", limit=5)
        assert (rejections.job_id, rejections.total, rejections.items) == (job.id, 0, [])
        cancelled = await client.cancel_job(job.id)
        assert cancelled.state == JobState.CANCELLED
        assert [j.state async for j in client.watch_job(job.id, poll_s=0.01)] == [
            JobState.CANCELLED
        ]

        unsuited = EnvironmentJobRequest(hops=[3], scenario_types=[ScenarioType.SINGLE_HOP])
        with pytest.raises(ServiceError) as refused:
            await client.start_environment_job(unsuited)
        assert refused.value.status == 422
        assert "no hop count in [3] suits scenario type(s) ['single_hop']" in refused.value.detail
        assert str(refused.value).startswith("synth: POST /v1/jobs/environments answered 422: ")
        with pytest.raises(ServiceError, match="answered 409") as ended:
            await client.cancel_job(job.id)
        assert ended.value.status == 409
        with pytest.raises(ServiceError, match="no job 'job_nope'") as missing:
            await client.get_job("job_nope")
        assert missing.value.status == 404

        async with SynthClient(url) as anonymous:
            assert (await anonymous.list_jobs()).items  # reads need no token
            with pytest.raises(ServiceError, match="answered 401") as unauthorised:
                await anonymous.start_job(EnvironmentJobRequest(count=1))
            assert unauthorised.value.status == 401


async def test_datasets_toolsets_and_the_emulator(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    records = [trajectory(f"t{i}", 1 + i % 2) for i in range(3)]
    out = tmp_path / "download"
    async with (
        synth(database_url, redis_url, tmp_path) as url,
        SynthClient(url, token=TOKEN) as client,
    ):
        manifest = await client.upload_dataset(DatasetUpload(name="three", records=records))
        assert (manifest.name, manifest.stats.records) == ("three", 3)
        assert [m.name for m in await client.list_datasets()] == ["three"]
        assert await client.get_dataset("three") == manifest
        for relative, digest in manifest.files.items():
            found = await client.download_dataset_file(
                "three", relative, out / relative, sha256=digest
            )
            assert found == digest
            assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == digest
        relative, scratch = sorted(manifest.files)[0], tmp_path / "scratch"
        with pytest.raises(ServiceError, match="arrived with another SHA-256"):
            await client.download_dataset_file("three", relative, scratch / "x", sha256="0" * 64)
        with pytest.raises(ServiceError, match=r"has no file 'secret\.txt'") as absent:
            await client.download_dataset_file("three", "secret.txt", scratch / "y")
        assert absent.value.status == 404
        assert names(scratch) == []  # no file, no partial download
        unfinished = records[0].model_copy(update={"messages": records[0].messages[:-1]})
        with pytest.raises(ServiceError, match="final answer") as refused:
            await client.upload_dataset(DatasetUpload(name="bad", records=[unfinished]))
        assert refused.value.status == 422

        tools = [
            {
                "name": f"get_{what}",
                "description": f"The {what} for the place with the given id.",
                "parameters": {"type": "object", "properties": {"city_id": {"type": "string"}}},
            }
            for what in ("forecast", "alerts", "humidity")
        ]
        request = ToolsetRequest(
            id="weather",
            json_tools=[JsonToolsSource(name="weather", tools=tools)],
            settings=TrajectorySettings(min_tools_per_server=3),
        )
        toolset = await client.register_toolset(request)
        assert [(s.name, len(s.tools)) for s in toolset.servers] == [("weather", 3)]
        assert await client.list_toolsets() == ["weather"]
        assert await client.get_toolset("weather") == toolset
        assert [graph.server for graph in await client.toolset_graphs("weather")] == ["weather"]
        with pytest.raises(ServiceError, match="no toolset 'nope'") as unknown:
            await client.start_task_job(TaskJobRequest(toolset_id="nope"))
        assert unknown.value.status == 404

        server = EmulatedServer(
            name="weather", tools=[ToolSpec.model_validate(tool) for tool in tools]
        )
        reply = await client.emulate(
            EmulateRequest(
                server=server,
                tool="get_forecast",
                arguments={"city_id": "c1"},
                history=[PastCall(tool="get_alerts", output={"alerts": []})],
                index=1,
                failure_rate=0.0,
            )
        )
        assert (reply.output, reply.error, reply.injected) == (
            {"forecast": "sun", "tool": "get_forecast"},
            None,
            False,
        )
        with pytest.raises(ServiceError, match="must be an http") as bad_llm:
            await client.emulate(
                EmulateRequest(server=server, tool="get_forecast", llm_base_url="ftp://llm")
            )
        assert bad_llm.value.status == 422


async def test_a_synth_that_is_not_there_is_unreachable(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with SynthClient(nowhere) as client:
        with pytest.raises(ServiceUnreachable, match=f"cannot reach synth at {nowhere}"):
            await client.get_job("job_1")
        with pytest.raises(ServiceUnreachable, match=r"POST /v1/jobs/environments"):
            await client.start_job(EnvironmentJobRequest(count=1))
        with pytest.raises(ServiceUnreachable):
            await client.download_dataset_file("d", "README.md", tmp_path / "README.md")
    assert not (tmp_path / "README.md").exists()


def test_environment_query_names_the_registry_routes_filters(tmp_path: Path) -> None:
    openapi = build_service_apps(tmp_path)["synth"].openapi()
    parameters = {p["name"] for p in openapi["paths"]["/v1/environments"]["get"]["parameters"]}
    assert parameters - {"limit", "offset"} == set(EnvironmentQuery.model_fields)
