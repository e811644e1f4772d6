"""Units of the local loop that need no running stack."""

from __future__ import annotations

import pytest

from astra.loop import rollout_offset


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
