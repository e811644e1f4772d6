"""The trainer client against the real trainer app: runs started as real processes, their
status, metrics and stop; the policy pointer; error answers; a trainer that is not there."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from trainer_support import MODEL_CACHE

from astra.redis_server import free_port
from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.trainer import TrainerClient
from astra_proto import POLICY_KEY, PolicyPointer
from astra_proto.api.trainer import GRPORunRequest, RunStatus, SFTRunRequest
from astra_trainer.app import create_app
from astra_trainer.run_files import append_metrics
from astra_trainer.settings import TrainerSettings

POLICY_DB = 11
"""A Redis database of this module's own: other tests publish policy pointers too."""


@asynccontextmanager
async def trainer(settings: TrainerSettings) -> AsyncIterator[TrainerClient]:
    """The trainer app in process, with its lifespan run (which closes its Redis client and
    stops its runs), and a client of it."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport) as http,
        TrainerClient("http://trainer", http=http) as client,
    ):
        yield client


def own_db(redis_url: str) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{POLICY_DB}"


async def test_the_policy_pointer_and_error_answers(redis_url: str, tmp_path: Path) -> None:
    url = own_db(redis_url)
    settings = TrainerSettings(redis_url=url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    pointer = PolicyPointer(
        version=3, checkpoint_uri="file:///ckpt/3", base_model="m", updated_at=datetime.now(UTC)
    )
    async with aioredis.Redis.from_url(url) as redis, trainer(settings) as client:
        await redis.delete(POLICY_KEY)
        assert await client.current_policy() is None
        await redis.set(POLICY_KEY, pointer.model_dump_json())
        assert await client.current_policy() == pointer
        await redis.delete(POLICY_KEY)

        missing = SFTRunRequest(dataset=tmp_path / "none")
        with pytest.raises(ServiceError, match="no such file or folder") as refused:
            await client.start_sft(missing)
        assert refused.value.status == 400
        assert str(refused.value).startswith("trainer: POST /v1/runs/sft answered 400: ")
        with pytest.raises(ServiceError, match="no run 'grpo-000000000000'") as unknown:
            await client.run_status("grpo-000000000000")
        assert unknown.value.status == 404
        with pytest.raises(ServiceError) as no_metrics:
            await client.run_metrics("grpo-000000000000")
        assert no_metrics.value.status == 404
        assert await client.list_runs() == []


async def test_metrics_records_as_logged(redis_url: str, tmp_path: Path) -> None:
    settings = TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    run_dir = tmp_path / "grpo-0123456789ab"
    append_metrics(run_dir, {"event": "step_started", "version": 1})
    append_metrics(run_dir, {"event": "step", "step": 1, "loss": 0.5})
    async with trainer(settings) as client:
        records = await client.run_metrics(run_dir.name)
        last = await client.run_metrics(run_dir.name, tail=1)
    assert [r["event"] for r in records] == ["step_started", "step"]
    assert all("time" in r for r in records)
    assert last == records[-1:]
    assert last[0]["loss"] == 0.5


@pytest.mark.slow
@pytest.mark.integration
async def test_a_grpo_run_from_its_request_to_its_end(redis_url: str, tmp_path: Path) -> None:
    settings = TrainerSettings(
        redis_url=redis_url,
        checkpoint_dir=tmp_path / "runs",
        model_dir=MODEL_CACHE,
        policy_base_url="http://127.0.0.1:9",
    )
    request = GRPORunRequest(
        base_model=str(tmp_path / "no-such-model"),
        batch_groups=3,
        buffer_groups=2,
        stream=f"test:traj:{tmp_path.name}",
        num_processes=1,
    )
    async with trainer(settings) as client:
        started = await client.start_grpo(request)
        assert (started.kind, started.state) == ("grpo", "pending")
        run = started
        deadline = time.monotonic() + 300  # the run process imports torch: slow when loaded
        while run.state in ("pending", "running"):
            assert time.monotonic() < deadline, "the run did not end"
            await asyncio.sleep(0.2)
            run = await client.run_status(started.run_id)
        stopped = await client.stop_run(started.run_id)  # an ended run: its status as it is
        listed = await client.list_runs()
    assert run.state == "failed"
    assert "no-such-model' is neither a known model" in (run.error or "")
    assert stopped.state == "failed"
    assert [r.run_id for r in listed] == [started.run_id]
    config = json.loads((tmp_path / "runs" / started.run_id / "request.json").read_text())
    assert config["run_dir"] == str((tmp_path / "runs" / started.run_id).resolve())
    assert (config["batch_groups"], config["buffer_groups"]) == (3, 2)
    assert config["redis_url"] == redis_url  # left out: the trainer's own
    assert config["policy_server_url"] == "http://127.0.0.1:9"
    assert config["group_size"] == GRPORunRequest().group_size


async def test_a_trainer_that_is_not_there_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with TrainerClient(url) as client:
        with pytest.raises(ServiceUnreachable, match=f"cannot reach trainer at {url}"):
            await client.start_grpo(GRPORunRequest())
        with pytest.raises(ServiceUnreachable, match="GET /v1/runs"):
            await client.list_runs()


def test_a_request_naming_the_run_directory_is_refused_before_it_is_sent() -> None:
    with pytest.raises(ValueError, match="run_dir is chosen by the service"):
        GRPORunRequest.model_validate({"run_dir": "/tmp/x"})
    with pytest.raises(ValueError, match="buffer_groups must be smaller than batch_groups"):
        GRPORunRequest(batch_groups=1, buffer_groups=1)
    status = RunStatus(run_id="sft-0123456789ab", kind="sft", state="pending")
    assert RunStatus.model_validate_json(status.model_dump_json()) == status
