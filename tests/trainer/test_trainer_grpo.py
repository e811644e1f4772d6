"""GRPO from the stream on real trajectories (real SmolLM2, real Redis): two steps in process."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import torch
from safetensors.torch import load_file
from trainer_support import model_store, publish_trajectories, sampled_groups, text_only_group

from astra_common.streams import done_key
from astra_proto import POLICY_KEY, PolicyPointer
from astra_trainer.grpo.checkpoint import CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.runner import CHECKPOINT_DIR, GRPORunner
from astra_trainer.run_files import read_metrics, read_status

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def sampled() -> list[Any]:
    """Three groups of two rollouts sampled from the real model (tokens + behaviour logprobs)."""
    return sampled_groups(model_store().ensure_default(), groups=3, group_size=2, max_new_tokens=8)


async def test_two_grpo_steps_from_the_stream(
    redis_url: str, tmp_path: Path, sampled: list[Any]
) -> None:
    stream = f"test:traj:{uuid.uuid4().hex[:8]}"
    flat = text_only_group("flat", 2)
    for trajectory in flat:  # equal rewards: no GRPO signal, must be filtered out
        trajectory.reward = flat[0].reward
    flat = [
        t.model_copy(update={"id": f"flat-{i}", "group_id": "flat"}) for i, t in enumerate(flat)
    ]
    text = text_only_group("text", 2)
    # Step 1: one sampled group + the text-only group; step 2: the two other sampled groups.
    await publish_trajectories(redis_url, stream, sampled[:2] + flat + text + sampled[2:])
    config = GRPOConfig(
        run_dir=tmp_path / "run",
        redis_url=redis_url,
        stream=stream,
        group_size=2,
        batch_groups=2,
        buffer_groups=1,
        learning_rate=1e-5,
        max_steps=2,
        block_ms=200,
        max_tokens=512,
        served_model="policy",
        save_optimizer=False,  # the restart test covers optimizer state
    )
    redis = aioredis.Redis.from_url(redis_url)
    store = model_store()
    base = load_file(store.ensure_default() / "model.safetensors")
    try:
        runner = GRPORunner(config, redis, store)
        status = await runner.run()
        assert status.state == "finished"
        assert status.step == 2
        assert status.policy_version == 2

        # Every entry acknowledged: trained ones after their checkpoint, the flat group at once.
        summary = await redis.xpending(stream, "trainer")
        assert summary["pending"] == 0
        for trajectory in sampled + text + flat:
            assert await redis.exists(done_key(stream, "trainer", trajectory.id)) == 1

        pointer = PolicyPointer.model_validate_json(await redis.get(POLICY_KEY) or b"")
        assert pointer.version == 2
        assert pointer.served_model == "policy"
        folder = Path(pointer.checkpoint_uri.removeprefix("file://"))
        assert folder == CheckpointStore(config.run_dir / CHECKPOINT_DIR).folder(2).resolve()
    finally:
        await redis.aclose()

    states = CheckpointStore(config.run_dir.resolve() / CHECKPOINT_DIR).states()
    assert [s.version for s in states] == [1, 2]
    trained = [rid for s in states for rid in s.record_ids]
    assert sorted(trained) == sorted(t.id for t in sampled + text)  # each exactly once

    new = load_file(folder / "model.safetensors")
    changed = [name for name, tensor in base.items() if not torch.equal(tensor.float(), new[name])]
    assert changed, "no weight changed after two GRPO steps"

    steps = [r for r in read_metrics(config.run_dir) if r.get("event") == "step"]
    assert len(steps) == 2
    for record in steps:
        assert math.isfinite(record["loss"])
        assert record["reward_std"] > 0
        assert record["tokens_per_second"] > 0
    assert steps[0]["rejected"] == {"no_reward_variance": 2}
    # One read took all five groups before the first step: four of five had reward variance.
    assert steps[0]["batch_fill_ratio"] == pytest.approx(4 / 5)
    # Step 1 runs the weights that sampled the rollouts: importance ratio ~1 on sampled tokens
    # (re-tokenized text has ratio exactly 1), which also checks the logprob alignment.
    assert steps[0]["ratio_mean"] == pytest.approx(1.0, abs=0.02)
    status_file = read_status(config.run_dir)
    assert status_file is not None
    assert status_file.checkpoint == str(folder)


async def test_crash_between_checkpoint_and_ack_is_not_trained_twice(
    redis_url: str, tmp_path: Path, sampled: list[Any]
) -> None:
    stream = f"test:traj:{uuid.uuid4().hex[:8]}"
    await publish_trajectories(redis_url, stream, sampled[:4])
    config = GRPOConfig(
        run_dir=tmp_path / "run",
        redis_url=redis_url,
        stream=stream,
        group_size=2,
        batch_groups=2,
        buffer_groups=0,
        max_steps=1,
        block_ms=200,
        max_tokens=512,
        save_optimizer=False,
    )
    redis = aioredis.Redis.from_url(redis_url)
    try:
        first = GRPORunner(config, redis, model_store())

        async def crash_on_ack(items: Any) -> int:
            # Not a Redis fault (those are retried): the process dies here.
            raise SystemError("trainer died before acknowledging")

        first.consumer.ack = crash_on_ack  # type: ignore[method-assign]
        with pytest.raises(SystemError):
            await first.run()
        store = CheckpointStore(config.run_dir.resolve() / CHECKPOINT_DIR)
        assert [s.version for s in store.states()] == [1]
        assert (await redis.xpending(stream, "trainer"))["pending"] == 4

        second = GRPORunner(config, redis, model_store())
        second.load()
        assert second.version == 1
        await second.recover()
        assert (await redis.xpending(stream, "trainer"))["pending"] == 0
        assert second.buffer.ready_groups == 0  # nothing queued to train again
        assert [s.version for s in store.states()] == [1]
        assert any(r.get("event") == "recovered_trained" for r in read_metrics(config.run_dir))
    finally:
        await redis.aclose()
