"""Data-parallel GRPO: two gloo ranks take the same step as one process on the same batch."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import torch
from ddp_step_rank import MICRO_BATCH_SIZE, NO_CLIPPING, config_for, weights_checksum
from trainer_support import publish_trajectories, sampled_groups, text_only_group

from astra_common.streams import done_key
from astra_trainer.grpo.checkpoint import CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.encoding import EncodedTrajectory, encode_trajectory
from astra_trainer.grpo.runner import CHECKPOINT_DIR, load_policy
from astra_trainer.grpo.step import grpo_step
from astra_trainer.models import ModelStore
from astra_trainer.run_files import read_metrics, read_status
from astra_trainer.runs import LOG_FILE, RunManager

RANK_SCRIPT = Path(__file__).with_name("ddp_step_rank.py")


def fixed_batch(model_folder: Path) -> list[list[EncodedTrajectory]]:
    """Two sampled groups of 3 (behaviour logprobs) and a text-only group of 3: 9 sequences,
    so the two ranks get 5 and 4, in 2 and 1 micro-batches of 4 (unequal counts on purpose)."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_folder)
    trajectories = sampled_groups(model_folder, groups=2, group_size=3, max_new_tokens=8)
    by_group: dict[str, list[EncodedTrajectory]] = {}
    for trajectory in [*trajectories, *text_only_group("text", 3)]:
        encoded = encode_trajectory(trajectory, tokenizer, max_tokens=2048)
        by_group.setdefault(encoded.group_id, []).append(encoded)
    return list(by_group.values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_gloo_ranks_take_the_same_step_as_one_process(
    default_model_dir: Path, tmp_path: Path
) -> None:
    """SGD at learning rate 1 without clipping makes the weight change the batch gradient, so
    equal weights mean equal gradients (Adam's first step is nearly sign(g) and would hide a
    wrongly scaled loss). Tolerance: float32 on CPU, the gradient summed in another order
    (two partial sums and a gloo all-reduce instead of one accumulation, other padding per
    micro-batch): differences are rounding, ~1e-7 relative per operation, a few 1e-6 of the
    largest update after thousands of terms; a share left out, a loss not scaled by the rank
    count or a token count that is not the whole batch's is off by tens of percent."""
    groups = fixed_batch(default_model_dir)
    sequences = sum(len(g) for g in groups)
    assert sequences == 9
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(json.dumps([[asdict(t) for t in g] for g in groups]))

    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        str(RANK_SCRIPT), str(default_model_dir), str(batch_file), str(out),
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["share"] for r in ranks] == [[0, 2, 4, 6, 8], [1, 3, 5, 7]]
    assert {r["backend"] for r in ranks} == {"gloo"}
    # The same gradient reached both ranks: their weights after the step are identical.
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert ranks[0]["loss"] == ranks[1]["loss"]

    # One process, the same batch, the same model loading and step.
    single = tmp_path / "single"
    config = config_for(default_model_dir, single)
    _, _, model, _, _ = load_policy(
        config, ModelStore(single / "models"), CheckpointStore(single / "checkpoints")
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    stats = grpo_step(
        model, torch.optim.SGD(model.parameters(), lr=1.0), groups,
        clip_low=config.clip_low, clip_high=config.clip_high, max_grad_norm=NO_CLIPPING,
        micro_batch_size=MICRO_BATCH_SIZE, pad_token_id=0,
    )  # fmt: skip
    assert stats.sequences == sequences
    assert ranks[0]["policy_tokens"] == stats.policy_tokens
    assert ranks[0]["loss"] == pytest.approx(stats.loss, rel=1e-5, abs=1e-7)
    assert ranks[0]["grad_norm"] == pytest.approx(stats.grad_norm, rel=1e-4)
    assert ranks[0]["clip_fraction"] == pytest.approx(stats.clip_fraction, abs=1e-9)
    assert stats.grad_norm > 0

    distributed = torch.load(out / "weights.pt", weights_only=True)
    largest = 0.0
    worst = 0.0
    for name, param in model.named_parameters():
        single_update = param.detach() - before[name]
        ddp_update = distributed[name] - before[name]
        largest = max(largest, float(single_update.abs().max()))
        worst = max(worst, float((ddp_update - single_update).abs().max()))
    assert largest > 0
    assert worst <= 1e-4 * largest + 1e-7, (worst, largest)
    assert weights_checksum(model) == pytest.approx(ranks[0]["checksum"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_two_process_run_trains_from_the_stream_and_acks_after_its_checkpoint(
    default_model_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    """The command a trainer service starts, with ``num_processes`` 2: it relaunches itself
    under torch.distributed.run; rank 0 reads, checkpoints, acks and reports; both ranks
    train; the run ends ``finished`` with exit code 0 (rank 1 stopped by rank 0)."""
    stream = f"test:ddp:{uuid.uuid4().hex[:8]}"
    trajectories = [*text_only_group("ddp-a", 2), *text_only_group("ddp-b", 2)]
    await publish_trajectories(redis_url, stream, trajectories)
    config = GRPOConfig(
        run_dir=tmp_path / "run",
        base_model=str(default_model_dir),
        redis_url=redis_url,
        stream=stream,
        group_size=2,
        batch_groups=2,
        buffer_groups=1,
        max_steps=1,
        block_ms=200,
        max_tokens=512,
        micro_batch_size=1,
        save_optimizer=False,
        num_processes=2,
    )
    config_file = tmp_path / "request.json"
    config_file.write_text(config.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "astra_trainer.cli", "grpo", "--config", str(config_file),
        "--model-dir", str(tmp_path / "models"),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    with anyio.fail_after(600):
        stdout, stderr = await process.communicate()
    log = stdout.decode()[-3000:] + stderr.decode()[-6000:]
    assert process.returncode == 0, log
    assert "[rank 1]" in log  # the second rank ran (and logged its stop)

    status = read_status(config.run_dir)
    assert status is not None
    assert status.state == "finished", log
    assert status.step == 1
    assert status.pid is not None
    assert status.pid != process.pid

    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert (await redis.xpending(stream, "trainer"))["pending"] == 0
        for trajectory in trajectories:
            assert await redis.exists(done_key(stream, "trainer", trajectory.id)) == 1
    finally:
        await redis.aclose()
    states = CheckpointStore(config.run_dir.resolve() / CHECKPOINT_DIR).states()
    assert [s.version for s in states] == [1]
    assert sorted(states[0].record_ids) == sorted(t.id for t in trajectories)
    steps = [r for r in read_metrics(config.run_dir) if r.get("event") == "step"]
    assert len(steps) == 1
    assert steps[0]["sequences"] == 4
    assert math.isfinite(steps[0]["loss"])
    assert steps[0]["grad_norm"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_stopping_a_two_process_run_stops_rank_0_and_it_ends_the_others(
    default_model_dir: Path, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's stop reaches rank 0 (its pid in status.json, not the launcher's): the run
    ends ``stopped``, and the launcher exits 0 once rank 0 has told rank 1 to stop."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = RunManager(tmp_path / "runs", default_model_dir.parent)
    run_id, run_dir = runs.new_run_dir("grpo")
    config = GRPOConfig(
        run_dir=run_dir,
        base_model=str(default_model_dir),
        redis_url=redis_url,
        stream=f"test:ddp-stop:{uuid.uuid4().hex[:8]}",
        block_ms=200,
        num_processes=2,
    )
    launcher = runs.start(run_id, "grpo", config)
    log = run_dir / LOG_FILE

    def both_ranks_loaded() -> bool:
        text = log.read_text() if log.is_file() else ""
        return text.count("GRPO starts at policy version 0") >= 2

    try:
        with anyio.fail_after(600):
            while not both_ranks_loaded():
                assert runs.status(run_id).state in ("pending", "running"), log.read_text()
                await asyncio.sleep(0.2)
        status = runs.status(run_id)
        assert status.state == "running"
        assert status.pid is not None
        assert status.pid != launcher.pid
        runs.stop(run_id)
        code = await asyncio.to_thread(runs.wait, run_id, 300)
    finally:
        runs.close()
    assert code == 0, log.read_text()[-4000:]
    final = runs.status(run_id)
    assert final.state == "stopped", log.read_text()[-4000:]
    assert "[rank 1] astra_trainer.grpo.runner: rank 1: 0 steps" in log.read_text()
