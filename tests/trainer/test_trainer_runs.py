"""Run processes under the trainer service: a bounded number at once, reaped at once, and
always ending with a final state (a killed process reads ``failed``, also after a restart)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from trainer_support import MODEL_CACHE, model_store

from astra_proto.api.trainer import RunStatus
from astra_trainer.app import create_app
from astra_trainer.run_files import read_status, write_status
from astra_trainer.runs import RunManager
from astra_trainer.settings import TrainerSettings


def _client(settings: TrainerSettings) -> tuple[httpx.AsyncClient, RunManager]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://trainer"), app.state.runs


async def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def test_unfinished_runs_without_a_process_read_failed_after_a_restart(
    redis_url: str, tmp_path: Path
) -> None:
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await asyncio.wait_for(ended.wait(), timeout=60)
    # Status files as a trainer service killed mid-run leaves them.
    write_status(
        tmp_path / "grpo-0123456789ab",
        RunStatus(run_id="grpo-0123456789ab", kind="grpo", state="running", pid=ended.pid),
    )
    write_status(  # a live pid, but another process's (pids are reused)
        tmp_path / "sft-0123456789ab",
        RunStatus(run_id="sft-0123456789ab", kind="sft", state="running", pid=os.getpid()),
    )
    write_status(
        tmp_path / "grpo-ba9876543210",
        RunStatus(run_id="grpo-ba9876543210", kind="grpo", state="pending"),
    )
    write_status(
        tmp_path / "grpo-aaaaaaaaaaaa",
        RunStatus(run_id="grpo-aaaaaaaaaaaa", kind="grpo", state="finished", step=3),
    )
    damaged = tmp_path / "sft-aaaaaaaaaaaa"
    damaged.mkdir()
    (damaged / "status.json").write_text('{"run_id": "sft-aaaaaaaaaaaa", "state": "runn')
    # Just started by another service on the same folder: no pid written yet, but alive.
    starting = tmp_path / "grpo-cccccccccccc"
    write_status(starting, RunStatus(run_id=starting.name, kind="grpo", state="pending"))
    alive = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; sys.stdin.read()",
        str(starting.resolve() / "request.json"),
        stdin=asyncio.subprocess.PIPE,
    )
    settings = TrainerSettings(redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    try:
        client, runs = _client(settings)
        async with client:
            listed = {r["run_id"]: r for r in (await client.get("/v1/runs")).json()}
        runs.close()
    finally:
        assert alive.stdin is not None
        alive.stdin.close()
        await asyncio.wait_for(alive.wait(), timeout=60)
    assert listed["grpo-cccccccccccc"]["state"] == "pending"
    assert listed["sft-aaaaaaaaaaaa"]["state"] == "failed"
    assert "unreadable status.json: Invalid JSON" in listed["sft-aaaaaaaaaaaa"]["error"]
    assert listed["grpo-aaaaaaaaaaaa"]["state"] == "finished"
    for run_id in ("grpo-0123456789ab", "sft-0123456789ab", "grpo-ba9876543210"):
        assert listed[run_id]["state"] == "failed", listed[run_id]
        assert "process" in listed[run_id]["error"]
        assert "is gone" in listed[run_id]["error"]
        settled = read_status(tmp_path / run_id)
        assert settled is not None
        assert settled.state == "failed"  # written down, not only reported
    assert f"pid {ended.pid}" in listed["grpo-0123456789ab"]["error"]


@pytest.mark.slow
@pytest.mark.integration
async def test_runs_beyond_the_limit_are_refused_and_a_killed_run_reads_failed(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="astra_trainer.runs")
    model_store().ensure_default()
    settings = TrainerSettings(
        redis_url=redis_url, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE, max_concurrent_runs=1
    )
    body = {"stream": f"test:traj:{uuid.uuid4().hex[:8]}", "block_ms": 100}
    client, runs = _client(settings)
    try:
        async with client:
            first = await client.post("/v1/runs/grpo", json=body)
            assert first.status_code == 202, first.text
            run_id, pid = first.json()["run_id"], first.json()["pid"]

            refused = await client.post("/v1/runs/grpo", json=body)
            assert refused.status_code == 429, refused.text
            assert run_id in refused.json()["detail"]
            assert "max_concurrent_runs" in refused.json()["detail"]
            assert os.listdir(tmp_path) == [run_id]

            deadline = time.monotonic() + 120
            while (await client.get(f"/v1/runs/{run_id}")).json()["state"] != "running":
                assert time.monotonic() < deadline, (tmp_path / run_id / "train.log").read_text()
                await asyncio.sleep(0.2)
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
            # Reaped without any listing or status request: no zombie is left behind.
            await _until(lambda: not Path(f"/proc/{pid}").exists(), 60, f"{pid} is reaped")
            killed = (await client.get(f"/v1/runs/{run_id}")).json()
            assert killed["state"] == "failed"
            assert "SIGKILL" in killed["error"]
            assert any(
                r.levelno == logging.ERROR and run_id in r.getMessage() for r in caplog.records
            )

            # The slot is free again; a run stopped before it could start reads "stopped".
            second = await client.post("/v1/runs/grpo", json=body)
            assert second.status_code == 202, second.text
            second_id = second.json()["run_id"]
            assert (await client.post(f"/v1/runs/{second_id}/stop")).status_code == 200
            assert runs.wait(second_id, timeout=120) is not None
            assert (await client.get(f"/v1/runs/{second_id}")).json()["state"] == "stopped"
    finally:
        runs.close()

    # A restarted service reads the killed run as failed too.
    restarted, restarted_runs = _client(settings)
    async with restarted:
        again = (await restarted.get(f"/v1/runs/{run_id}")).json()
    restarted_runs.close()
    assert again["state"] == "failed"
    assert "SIGKILL" in again["error"]


def test_a_watcher_outlives_a_removed_run_folder_or_a_damaged_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = RunManager(tmp_path, MODEL_CACHE)
    damaged = tmp_path / "grpo-0123456789ab"
    damaged.mkdir()
    (damaged / "status.json").write_text("{")
    for run_id in ("grpo-0123456789ab", "grpo-ba9876543210"):  # the second has no folder
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        runs._watch(run_id, process)  # logs, never raises (its thread would die silently)
        assert process.returncode == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not be settled" in m for m in messages)
    assert any("after its folder was removed" in m for m in messages)
    assert not (tmp_path / "grpo-ba9876543210").exists()
