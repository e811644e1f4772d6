"""Every service app in process: health, metrics, OpenAPI, settings errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI
from pydantic import ValidationError

from astra_common.service import bearer_auth, create_service_app
from astra_common.settings import ServiceSettings
from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_proto import POLICY_KEY, PolicyPointer
from astra_rollout.app import create_app as create_rollout
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings
from astra_trainer.app import create_app as create_trainer
from astra_trainer.settings import TrainerSettings

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in process, with its lifespan run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def all_apps(redis_url: str, tmp_path: Path) -> dict[str, Callable[[], FastAPI]]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    return {
        "synth": lambda: create_synth(
            SynthSettings(database_url=database_url, redis_url=redis_url)
        ),
        "envhost": lambda: create_envhost(
            EnvhostSettings(database_url=database_url, sandbox="none", allow_unsandboxed=True)
        ),
        "rollout": lambda: create_rollout(RolloutSettings(redis_url=redis_url)),
        "trainer": lambda: create_trainer(TrainerSettings(redis_url=redis_url)),
    }


@pytest.mark.parametrize("service", ["synth", "envhost", "rollout", "trainer"])
async def test_health_metrics_and_openapi(service: str, redis_url: str, tmp_path: Path) -> None:
    async with serve(all_apps(redis_url, tmp_path)[service]()) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["service"] == service
        assert body["status"] == "ok"
        assert body["checks"]
        assert all(v == "ok" for v in body["checks"].values())

        info = (await client.get("/v1/info")).json()
        assert info == {
            "service": service,
            "version": "0.1.0",
            "environment": "development",
            "auth_required": False,
        }

        openapi = (await client.get("/v1/openapi.json")).json()
        assert openapi["info"]["title"] == f"astra-{service}"
        assert "/v1/info" in openapi["paths"]

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "text/plain" in metrics.headers["content-type"]
        assert (
            f'astra_http_requests_total{{method="GET",route="/healthz",service="{service}",'
            'status="200"} 1.0'
        ) in metrics.text


@pytest.mark.parametrize("service", ["synth", "rollout", "trainer"])
async def test_health_reports_unreachable_redis(service: str, tmp_path: Path) -> None:
    async with serve(all_apps(DEAD_REDIS, tmp_path)[service]()) as client:
        health = await client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unavailable"
    failing = [name for name, value in body["checks"].items() if value != "ok"]
    assert failing == ["broker" if service == "synth" else "redis"]
    assert "ConnectionError" in body["checks"][failing[0]]


async def test_envhost_health_reports_unreachable_database() -> None:
    settings = EnvhostSettings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        sandbox="none",
        allow_unsandboxed=True,
    )
    async with serve(create_envhost(settings)) as client:
        health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["database"].startswith("error:")


async def test_trainer_policy_pointer(redis_url: str, tmp_path: Path) -> None:
    client_redis = aioredis.Redis.from_url(redis_url)
    try:
        await client_redis.delete(POLICY_KEY)
        async with serve(all_apps(redis_url, tmp_path)["trainer"]()) as client:
            missing = await client.get("/v1/policy")
            assert missing.status_code == 404
            assert POLICY_KEY in missing.json()["detail"]
            pointer = PolicyPointer(version=3, checkpoint_uri="file:///ckpt/3", base_model="m")
            await client_redis.set(POLICY_KEY, pointer.model_dump_json())
            found = await client.get("/v1/policy")
            assert found.status_code == 200
            assert PolicyPointer.model_validate(found.json()) == pointer
    finally:
        await client_redis.delete(POLICY_KEY)
        await client_redis.aclose()


async def test_bearer_auth_protects_routes() -> None:
    settings = ServiceSettings(api_token="s3cret")
    router = APIRouter()

    @router.post("/things", dependencies=[Depends(bearer_auth(settings))])
    async def create_thing() -> dict[str, Any]:
        return {"created": True}

    app = create_service_app(service="t", version="0", settings=settings, routers=[router])
    async with serve(app) as client:
        anonymous = await client.post("/v1/things")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        wrong = await client.post("/v1/things", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.post("/v1/things", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert (await client.get("/v1/info")).json()["auth_required"] is True


async def test_metrics_label_requests_by_route_template() -> None:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def read_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.get("/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    app = create_service_app(service="t", version="0", settings=ServiceSettings(), routers=[router])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for thing in ("a", "b", "c"):
                assert (await client.get(f"/v1/things/{thing}")).status_code == 200
            assert (await client.get("/nowhere")).status_code == 404
            assert (await client.get("/v1/broken")).status_code == 500
            text = (await client.get("/metrics")).text
    assert (
        'astra_http_requests_total{method="GET",route="/v1/things/{thing_id}",service="t",'
        'status="200"} 3.0'
    ) in text
    assert "/v1/things/a" not in text
    assert (
        'astra_http_requests_total{method="GET",route="unmatched",service="t",status="404"} 1.0'
    ) in text
    assert (
        'astra_http_requests_total{method="GET",route="/v1/broken",service="t",status="500"} 1.0'
    ) in text
    assert (
        'astra_http_request_seconds_count{method="GET",route="/v1/things/{thing_id}",service="t"}'
        " 3.0"
    ) in text


def test_production_requires_token() -> None:
    with pytest.raises(ValidationError, match="ASTRA_ROLLOUT_API_TOKEN must be set"):
        RolloutSettings(environment="production")
    assert RolloutSettings(environment="production", api_token="x").api_token is not None


def _run_entry_point(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invalid_setting_is_one_readable_line() -> None:
    result = _run_entry_point("astra_trainer.main", {"ASTRA_TRAINER_PORT": "not-a-port"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("astra: invalid configuration: port:")


def test_envhost_refuses_to_run_without_isolation() -> None:
    result = _run_entry_point("astra_envhost.main", {"ASTRA_ENVHOST_SANDBOX": "none"})
    assert result.returncode == 2
    assert "ASTRA_ENVHOST_ALLOW_UNSANDBOXED" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
