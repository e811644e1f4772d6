"""The trainer's REST API: runs as real child processes, status, stop, metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from trainer_support import MODEL_CACHE, model_store

from astra_trainer.app import create_app
from astra_trainer.run_files import append_metrics
from astra_trainer.runs import RunManager
from astra_trainer.settings import TrainerSettings


def _client(settings: TrainerSettings) -> tuple[httpx.AsyncClient, RunManager]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://trainer"), app.state.runs


async def test_bad_requests_get_clear_errors(redis_url: str, tmp_path: Path) -> None:
    settings = TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    client, runs = _client(settings)
    async with client:
        missing = await client.post("/v1/runs/sft", json={"dataset": str(tmp_path / "none")})
        assert missing.status_code == 400
        assert "no such file or folder" in missing.json()["detail"]
        wrong = await client.post("/v1/runs/sft", json={"dataset": "x", "batch_size": 0})
        assert wrong.status_code == 422
        chosen = await client.post("/v1/runs/grpo", json={"run_dir": "/tmp/x"})
        assert chosen.status_code == 422
        bad_buffer = await client.post(
            "/v1/runs/grpo", json={"batch_groups": 1, "buffer_groups": 1}
        )
        assert bad_buffer.status_code == 422
        assert (await client.get("/v1/runs/grpo-000000000000")).status_code == 404
        assert (await client.get("/v1/runs")).json() == []
    runs.close()


async def test_metrics_show_the_newest_step_of_each_run(redis_url: str, tmp_path: Path) -> None:
    settings = TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    append_metrics(
        tmp_path / "grpo-0123456789ab",
        {"event": "step", "step": 1, "loss": 0.5, "policy_version": 1, "reward_std": 0.25},
    )
    append_metrics(
        tmp_path / "grpo-0123456789ab",
        {"event": "step", "step": 2, "loss": 0.25, "policy_version": 2, "reward_std": 0.5},
    )
    client, runs = _client(settings)
    async with client:
        text = (await client.get("/metrics")).text
        steps = (await client.get("/v1/runs/grpo-0123456789ab/metrics")).json()
        last = (await client.get("/v1/runs/grpo-0123456789ab/metrics?tail=1")).json()
        bad_tail = await client.get("/v1/runs/grpo-0123456789ab/metrics?tail=0")
        missing = await client.get("/v1/runs/grpo-999999999999/metrics")
    assert [(r["step"], r["loss"]) for r in steps] == [(1, 0.5), (2, 0.25)]
    assert [r["step"] for r in last] == [2]
    assert bad_tail.status_code == 422
    assert missing.status_code == 404
    assert 'astra_trainer_policy_version{run="grpo-0123456789ab"} 2.0' in text
    assert 'astra_trainer_loss{run="grpo-0123456789ab"} 0.25' in text
    assert 'astra_trainer_reward_std{run="grpo-0123456789ab"} 0.5' in text
    runs.close()


@pytest.mark.slow
@pytest.mark.integration
async def test_start_and_stop_a_grpo_consumer(redis_url: str, tmp_path: Path) -> None:
    model_store().ensure_default()
    settings = TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    client, runs = _client(settings)
    stream = f"test:traj:{uuid.uuid4().hex[:8]}"
    try:
        async with client:
            started = await client.post("/v1/runs/grpo", json={"stream": stream, "block_ms": 100})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            deadline = time.monotonic() + 90
            while (await client.get(f"/v1/runs/{run_id}")).json()["state"] != "running":
                assert time.monotonic() < deadline, (tmp_path / run_id / "train.log").read_text()
                await asyncio.sleep(0.2)
            # Running means the group exists and the policy pointer (version 0) is being set.
            stopped = await client.post(f"/v1/runs/{run_id}/stop")
            assert stopped.status_code == 200
            assert runs.wait(run_id, timeout=60) == 0
            final = (await client.get(f"/v1/runs/{run_id}")).json()
            assert final["state"] == "stopped"
            assert [r["run_id"] for r in (await client.get("/v1/runs")).json()] == [run_id]
    finally:
        runs.close()
