"""Units of the local loop that need no running stack."""

from __future__ import annotations

import pytest

from astra.loop import LoopConfig, grpo_request, rollout_offset


def test_rollout_batches_cycle_through_the_training_split() -> None:
    starts = [rollout_offset(index, 8, 24) for index in range(6)]
    assert starts == [0, 8, 16, 0, 8, 16]
    # A split the batch size does not divide: the last slice ends at the split's end.
    assert [rollout_offset(index, 10, 24) for index in range(4)] == [0, 10, 14, 0]


@pytest.mark.parametrize(("per_batch", "train_envs"), [(10, 24), (7, 24), (5, 12), (3, 3)])
def test_every_slice_is_whole_and_inside_the_split(per_batch: int, train_envs: int) -> None:
    seen: set[int] = set()
    for index in range(12):
        start = rollout_offset(index, per_batch, train_envs)
        assert start >= 0
        assert start + per_batch <= train_envs
        seen.update(range(start, start + per_batch))
    # Over enough batches every training environment is played.
    assert seen == set(range(train_envs))


def test_a_batch_larger_than_the_split_takes_it_all() -> None:
    assert rollout_offset(3, 30, 24) == 0


def test_the_grpo_run_carries_the_loops_training_settings() -> None:
    config = LoopConfig(
        grpo_batch_groups=4,
        grpo_learning_rate=2e-5,
        grpo_max_staleness=2,
        grpo_max_tokens=3072,
        grpo_gradient_checkpointing=False,
    )
    request = grpo_request(config, "/models/sft", "run-1")
    assert request.base_model == "/models/sft"
    assert (request.batch_groups, request.buffer_groups) == (4, 3)
    assert request.learning_rate == 2e-5
    assert request.max_staleness == 2
    assert request.max_tokens == 3072
    assert request.gradient_checkpointing is False
    assert request.group_start == "new"
    assert request.group == "trainer-run-1"


def test_the_loop_rejects_a_grpo_setting_the_trainer_would_refuse() -> None:
    with pytest.raises(ValueError, match="max_staleness"):
        grpo_request(LoopConfig(grpo_max_staleness=-1), "/models/sft", "run-1")
