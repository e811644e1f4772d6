"""Exactly-once training across a crash: SIGKILL a real trainer mid-batch, restart it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from trainer_support import MODEL_CACHE, model_store, publish_trajectories, sampled_groups

from astra_proto import POLICY_KEY, PolicyPointer
from astra_trainer.grpo.checkpoint import CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.runner import CHECKPOINT_DIR
from astra_trainer.run_files import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _start(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "astra_trainer.cli",
                "grpo",
                "--config",
                str(config_file),
                "--model-dir",
                str(MODEL_CACHE),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for(predicate: Any, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"trainer exited {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; trainer log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


async def test_sigkill_mid_batch_then_restart_trains_each_trajectory_once(
    redis_url: str, tmp_path: Path
) -> None:
    trajectories = sampled_groups(
        model_store().ensure_default(), groups=4, group_size=2, max_new_tokens=6, prefix="k"
    )
    stream = f"test:traj:{uuid.uuid4().hex[:8]}"
    config = GRPOConfig(
        run_dir=tmp_path / "run",
        redis_url=redis_url,
        stream=stream,
        group_size=2,
        batch_groups=2,
        buffer_groups=1,
        learning_rate=1e-5,
        block_ms=100,
        max_tokens=256,
        keep_checkpoints=1,
    )
    config_file = tmp_path / "grpo.json"
    config_file.write_text(config.model_dump_json())
    log = tmp_path / "trainer.log"
    run_dir = config.run_dir

    def started_steps() -> int:
        return sum(1 for r in read_metrics(run_dir) if r.get("event") == "step_started")

    # First life: one batch published; killed as soon as its step starts.
    first = _start(config_file, log)
    try:
        await publish_trajectories(redis_url, stream, trajectories[:4])
        _wait_for(lambda: started_steps() >= 1, first, log, timeout=90)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    # Second life: the rest published; runs until every record is in a checkpoint.
    await publish_trajectories(redis_url, stream, trajectories[4:])
    store = CheckpointStore(run_dir / CHECKPOINT_DIR)
    second = _start(config_file, log)
    try:
        _wait_for(lambda: len(store.states()) >= 2, second, log, timeout=100)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()

    trained = Counter(rid for state in store.states() for rid in state.record_ids)
    assert set(trained) == {t.id for t in trajectories}
    assert set(trained.values()) == {1}, f"trained more than once: {trained}"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert (await redis.xpending(stream, "trainer"))["pending"] == 0
        pointer = PolicyPointer.model_validate_json(await redis.get(POLICY_KEY) or b"")
        assert pointer.version == len(store.states())
    finally:
        await redis.aclose()
    # The newest checkpoint resumes exactly: weights and AdamW state are both there.
    newest = store.folder(store.states()[-1].version)
    assert (newest / "model.safetensors").is_file()
    assert (newest / "optimizer.pt").is_file()
    events = [json.dumps(r) for r in read_metrics(run_dir) if r.get("event") == "step_started"]
    assert len(events) >= 2
