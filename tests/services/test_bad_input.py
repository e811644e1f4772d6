"""Bad input gets a small 4xx, an unavailable dependency 503: never a 5xx, never an echo."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from envhost_support import register, weather_spec
from fastapi import APIRouter, FastAPI, HTTPException

from astra_common.db.migrate import upgrade_async
from astra_common.service import create_service_app
from astra_common.settings import ServiceSettings
from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec
from astra_rollout.app import create_app as create_rollout
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings
from astra_trainer.app import create_app as create_trainer
from astra_trainer.settings import TrainerSettings

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
DEAD_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"
HUGE = "99999999999999999999"
DB_INT_MAX = 2**31 - 1  # PostgreSQL integer
BIG_BODY_BYTES = 50 * 1024 * 1024
SMALL_ANSWER_BYTES = 2_000
"""An error answer to a large request stays this small."""


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in process, with its lifespan run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=120
        ) as client:
            yield client


def apps(redis_url: str, database_url: str, tmp_path: Path) -> dict[str, Callable[[], FastAPI]]:
    return {
        "synth": lambda: create_synth(
            SynthSettings(
                database_url=database_url, redis_url=redis_url, data_dir=str(tmp_path / "synth")
            )
        ),
        "envhost": lambda: create_envhost(
            EnvhostSettings(database_url=database_url, sandbox="none", allow_unsandboxed=True)
        ),
        "rollout": lambda: create_rollout(
            RolloutSettings(
                redis_url=redis_url,
                envhost_url="http://127.0.0.1:1",
                synth_url="http://127.0.0.1:1",
            )
        ),
        "trainer": lambda: create_trainer(
            TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path / "checkpoints")
        ),
    }


def _assert_small_validation_error(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text[:500]
    assert len(response.content) <= SMALL_ANSWER_BYTES, response.content[:500]
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    assert all({"type", "loc", "msg"} <= set(error) for error in detail), detail
    return detail


LARGE_BODY_ROUTES = [
    ("synth", "/v1/environments"),
    ("synth", "/v1/toolsets"),
    ("envhost", "/v1/executions"),
    ("envhost", "/v1/episodes"),
    ("rollout", "/v1/teacher-runs"),
    ("rollout", "/v1/batches"),
]


@pytest.mark.parametrize(("service", "path"), LARGE_BODY_ROUTES)
async def test_a_50_mb_body_gets_a_short_413(
    service: str, path: str, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    body = b'{"task": "' + b"x" * BIG_BODY_BYTES + b'"}'
    async with serve(apps(redis_url, database_url, tmp_path)[service]()) as client:
        response = await client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413, response.content[:300]
    assert len(response.content) <= SMALL_ANSWER_BYTES
    assert "8388608 bytes" in response.json()["detail"]


async def test_a_streamed_body_without_length_is_counted(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """No Content-Length to trust: the bytes are counted as they arrive."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"task": "'
        for _ in range(BIG_BODY_BYTES // 65536):
            sent += 65536
            yield b"x" * 65536

    async with serve(apps(redis_url, database_url, tmp_path)["synth"]()) as client:
        response = await client.post(
            "/v1/environments", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.content[:300]
    assert len(response.content) <= SMALL_ANSWER_BYTES
    assert sent < BIG_BODY_BYTES // 2  # refused once the cap was passed, not at the end


async def test_validation_errors_are_a_list_and_never_copy_a_large_input(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    long_text = "y" * 1_000_000
    async with serve(apps(redis_url, database_url, tmp_path)["synth"]()) as client:
        wrong_type = await client.post("/v1/environments", json={"spec": {"task": [long_text]}})
        extra_key = await client.post("/v1/toolsets", json={long_text: 1, "json_tools": []})
        not_json = await client.post(
            "/v1/environments",
            content=b"{" + long_text.encode(),
            headers={"Content-Type": "application/json"},
        )
    for response in (wrong_type, extra_key, not_json):
        detail = _assert_small_validation_error(response)
        assert long_text[:1000] not in response.text
        assert detail


async def test_a_validator_error_keeps_its_message(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    async with serve(apps(redis_url, database_url, tmp_path)["rollout"]()) as client:
        both = await client.post("/v1/batches", json={"env_ids": ["env_a"], "query": {}})
    (error,) = _assert_small_validation_error(both)
    assert error["ctx"] == {"error": "give exactly one of env_ids and query"}


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/environments?offset={HUGE}",
        f"/v1/environments?max_hops={HUGE}",
        f"/v1/environments?min_hops={DB_INT_MAX + 1}",
        f"/v1/jobs?offset={HUGE}",
        f"/v1/jobs/job_x/rejections?offset={HUGE}",
        f"/v1/episodes?offset={HUGE}",
        f"/v1/trajectories?offset={HUGE}",
        f"/v1/trajectories?policy_version={HUGE}",
    ],
)
async def test_integers_beyond_the_database_are_422(
    path: str, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    async with serve(apps(redis_url, database_url, tmp_path)["synth"]()) as client:
        response = await client.get(path)
        largest = await client.get(path.split("?")[0] + f"?offset={DB_INT_MAX}")
    detail = _assert_small_validation_error(response)
    assert detail[0]["loc"][0] == "query"
    assert largest.status_code == (404 if "job_x" in path else 200), largest.text


async def test_dataset_names_are_file_names(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    async with serve(apps(redis_url, database_url, tmp_path)["synth"]()) as client:
        for name in ("+0.0", ".hidden", "a b"):
            _assert_small_validation_error(await client.get(f"/v1/datasets/{name}"))
            _assert_small_validation_error(await client.get(f"/v1/datasets/{name}/files/x"))
        assert (await client.get("/v1/datasets/a..b")).status_code == 404
        assert (await client.get("/v1/datasets/a..b/files/x")).status_code == 404


async def test_a_toolset_id_starting_with_a_dot_is_422(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    tools = [{"name": f"t{i}", "description": "does a thing", "parameters": {}} for i in range(3)]
    async with serve(apps(redis_url, database_url, tmp_path)["synth"]()) as client:
        dotted = await client.post(
            "/v1/toolsets", json={"id": ".ts", "json_tools": [{"name": "s", "tools": tools}]}
        )
        accepted = await client.post(
            "/v1/toolsets", json={"id": "ts.1", "json_tools": [{"name": "s", "tools": tools}]}
        )
    _assert_small_validation_error(dotted)
    assert accepted.status_code == 201, accepted.text


@pytest.mark.parametrize("env_id", ["", ".", "..", "a/b"])
async def test_a_batch_naming_an_impossible_environment_id_is_422(
    env_id: str, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    async with serve(apps(redis_url, database_url, tmp_path)["rollout"]()) as client:
        response = await client.post("/v1/batches", json={"env_ids": [env_id]})
        too_far = await client.post("/v1/batches", json={"query": {"offset": int(HUGE)}})
    detail = _assert_small_validation_error(response)
    assert detail[0]["loc"][:3] == ["body", "env_ids", 0]
    _assert_small_validation_error(too_far)


async def test_a_batch_seed_stays_a_database_integer(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Episode i of a group is stored with seed + i."""
    async with serve(apps(redis_url, database_url, tmp_path)["rollout"]()) as client:
        response = await client.post("/v1/batches", json={"env_ids": ["env_a"], "seed": DB_INT_MAX})
    detail = _assert_small_validation_error(response)
    assert detail[0]["loc"] == ["body", "seed"]


async def test_redis_outage_is_503(database_url: str, tmp_path: Path) -> None:
    built = apps(DEAD_REDIS, database_url, tmp_path)
    async with serve(built["synth"]()) as synth, serve(built["trainer"]()) as trainer:
        workers = await synth.get("/v1/workers")
        policy = await trainer.get("/v1/policy")
    for response in (workers, policy):
        assert response.status_code == 503, response.text
        assert "Redis is unavailable" in response.json()["detail"]
        assert response.headers["retry-after"]


async def test_database_outage_is_503(redis_url: str, tmp_path: Path) -> None:
    built = apps(redis_url, DEAD_DATABASE, tmp_path)
    async with serve(built["synth"]()) as synth, serve(built["envhost"]()) as envhost:
        job = await synth.get("/v1/jobs/job_x")
        environments = await synth.get("/v1/environments")
        episode = await envhost.post("/v1/episodes", json={"env_id": "env_x"})
    for response in (job, environments, episode):
        assert response.status_code == 503, response.text
        assert "the database is unavailable" in response.json()["detail"]


async def test_route_errors_are_cut_to_size() -> None:
    router = APIRouter()
    long_words = "z" * 100_000

    @router.get("/long")
    async def long() -> None:
        raise HTTPException(422, detail=long_words)

    @router.get("/names")
    async def names() -> None:
        raise HTTPException(409, detail=["a", "b"])

    @router.get("/errors")
    async def errors() -> None:
        raise HTTPException(422, detail=[{"type": "x", "loc": ["body"], "msg": long_words}])

    app = create_service_app(service="t", version="0", settings=ServiceSettings(), routers=[router])
    async with serve(app) as client:
        long_answer = await client.get("/v1/long")
        names_answer = await client.get("/v1/names")
        errors_answer = await client.get("/v1/errors")
    assert long_answer.status_code == 422
    assert len(long_answer.content) <= SMALL_ANSWER_BYTES + 100
    assert names_answer.status_code == 409
    assert names_answer.json() == {"detail": ["a", "b"]}
    (error,) = _assert_small_validation_error(errors_answer)
    assert error["type"] == "x"


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for one test (dropped afterwards)."""
    name = f"astra_bad_input_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        await upgrade_async(f"{base}/{name}")
        yield f"{base}/{name}"
    finally:
        async with await psycopg.AsyncConnection.connect(
            postgres_admin_url, autocommit=True
        ) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
async def test_a_value_postgresql_refuses_is_422(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stores no NUL character in text or JSON: the request is at fault."""
    spec = EnvironmentSpec(task="a task \x00 with a NUL", domain="d")
    async with serve(apps(redis_url, postgres_url, tmp_path)["synth"]()) as client:
        answers = [
            await client.get("/v1/environments?source=%00"),
            await client.get("/v1/jobs/job%00x"),
            await client.post("/v1/environments", json=spec.model_dump(mode="json")),
        ]
        clean = await client.get("/v1/environments?source=procedural")
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "NUL" in answer.json()["detail"] or "Unicode" in answer.json()["detail"]
    assert clean.status_code == 200


@pytest.mark.postgres
async def test_an_episode_seed_beyond_the_database_is_422(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The seed is stored with the episode: one past PostgreSQL's integer is refused at once,
    not lost later by the write-behind journal."""
    await register(postgres_url, weather_spec())
    async with serve(apps(redis_url, postgres_url, tmp_path)["envhost"]()) as client:
        too_big = await client.post(
            "/v1/episodes", json={"env_id": weather_spec().id, "seed": DB_INT_MAX + 1}
        )
        largest = await client.post(
            "/v1/episodes", json={"env_id": weather_spec().id, "seed": DB_INT_MAX}
        )
    detail = _assert_small_validation_error(too_big)
    assert detail[0]["loc"] == ["body", "seed"]
    assert largest.status_code == 201, largest.text
    episode_id = largest.json()["id"]
    deadline = time.monotonic() + 60  # the journal writes the episode behind the request
    async with await psycopg.AsyncConnection.connect(postgres_url.replace("+psycopg", "")) as conn:
        while True:
            query = await conn.execute("SELECT seed FROM episodes WHERE id = %s", [episode_id])
            row = await query.fetchone()
            if row is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert row == (DB_INT_MAX,)


@pytest.mark.parametrize("service", ["synth", "envhost", "rollout", "trainer"])
async def test_openapi_declares_the_error_bodies_sent(
    service: str, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    async with serve(apps(redis_url, database_url, tmp_path)[service]()) as client:
        document = (await client.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    variants = schemas["HTTPValidationError"]["properties"]["detail"]["anyOf"]
    assert {"type": "string"} in variants
    assert {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}} in variants
    for path_item in document["paths"].values():
        for operation in path_item.values():
            assert {"413", "503"} <= set(operation["responses"])
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    unhealthy = document["paths"]["/healthz"]["get"]["responses"]["503"]["content"]
    assert unhealthy["application/json"]["schema"] == {"type": "object"}  # not ErrorBody
