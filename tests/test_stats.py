"""Confidence intervals of evaluation scores: bootstrap, Wilson, paired differences."""

from __future__ import annotations

import pytest

from astra.stats import Interval, bootstrap_mean_ci, paired_difference, wilson_interval


def test_a_constant_sample_has_the_point_as_interval() -> None:
    interval = bootstrap_mean_ci([0.4] * 12)
    assert interval.low == interval.estimate == interval.high == pytest.approx(0.4)
    assert bootstrap_mean_ci([1.0]) == Interval(1.0, 1.0, 1.0)


def test_the_interval_holds_the_mean_and_narrows_with_more_tasks() -> None:
    values = [0.0, 0.25, 0.5, 1.0, 0.0, 0.75, 1.0, 0.5]
    few = bootstrap_mean_ci(values)
    many = bootstrap_mean_ci(values * 16)
    assert few.estimate == pytest.approx(0.5)
    assert few.low < 0.5 < few.high
    assert few.low >= 0.0
    assert few.high <= 1.0
    assert many.high - many.low < (few.high - few.low) / 2
    # The bootstrap standard error of this sample is about 0.13: the 95 % interval spans ~4 of them.
    assert 0.35 < few.high - few.low < 0.65


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    values = [0.1, 0.9, 0.3, 0.0, 0.7, 0.2, 0.4]
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert bootstrap_mean_ci(values, seed=3) != bootstrap_mean_ci(values, seed=4)


def test_empty_or_invalid_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([0.5], confidence=1.5)
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="none of 2 and 1 are shared"):
        paired_difference({"a": 1.0, "b": 0.0}, {"c": 1.0})


def test_wilson_interval_matches_the_formula() -> None:
    # 8 of 16 at 95 %: p = 0.5, centre 0.5, half-width 1.96/(1+3.84/16)*sqrt(1/64+3.84/1024).
    half = 1.959964 / (1 + 1.959964**2 / 16) * (1 / 64 + 1.959964**2 / 1024) ** 0.5
    interval = wilson_interval(8, 16)
    assert interval.estimate == 0.5
    assert interval.low == pytest.approx(0.5 - half, abs=1e-6)
    assert interval.high == pytest.approx(0.5 + half, abs=1e-6)
    assert wilson_interval(0, 10).low == 0.0  # exactly, where the formula leaves 3e-17
    none = wilson_interval(0, 16)  # no successes: still an upper bound above 0
    assert none.low == 0.0
    assert 0.15 < none.high < 0.25
    everything = wilson_interval(16, 16)
    assert everything.high == 1.0
    assert 0.75 < everything.low < 0.85


def test_an_identical_pair_is_within_noise() -> None:
    scores = {f"env{i}": i / 10 for i in range(10)}
    result = paired_difference(scores, dict(scores))
    assert result.difference == Interval(0.0, 0.0, 0.0)
    assert (result.paired, result.unpaired) == (10, 0)
    assert result.within_noise
    assert result.verdict("SFT", "SFT+RL") == "within noise"


def test_a_clear_shift_is_outside_noise_in_its_direction() -> None:
    before = {f"env{i}": (i % 5) / 10 for i in range(20)}
    after = {key: value + 0.3 + (0.05 if i % 2 else -0.05) for i, (key, value) in
             enumerate(before.items())}  # fmt: skip
    up = paired_difference(before, after)
    assert up.difference.estimate == pytest.approx(0.3)
    assert up.difference.low > 0
    assert up.verdict("SFT", "SFT+RL") == "SFT+RL above SFT"
    down = paired_difference(after, before)
    assert down.difference.high < 0
    assert down.verdict("SFT", "SFT+RL") == "SFT+RL below SFT"


def test_pairing_removes_the_spread_between_tasks() -> None:
    # Tasks differ widely, each improves by 0.1: unpaired intervals overlap, the paired one
    # excludes 0.
    before = {f"env{i}": i / 25 for i in range(20)}
    after = {key: value + 0.1 for key, value in before.items()}
    assert (
        bootstrap_mean_ci(list(after.values())).low < bootstrap_mean_ci(list(before.values())).high
    )
    assert not paired_difference(before, after).within_noise


def test_a_change_on_one_task_in_sixteen_is_within_noise() -> None:
    before = {f"env{i}": 0.2 for i in range(16)}
    after = before | {"env3": 0.9}
    result = paired_difference(before, after)
    assert result.difference.estimate == pytest.approx(0.7 / 16)
    assert result.within_noise


def test_tasks_of_only_one_side_are_left_out_and_counted() -> None:
    before = {"a": 0.0, "b": 0.5, "c": 1.0, "gone": 0.0}
    after = {"a": 0.0, "b": 0.5, "c": 1.0, "new1": 1.0, "new2": 1.0}
    result = paired_difference(before, after)
    assert (result.paired, result.unpaired) == (3, 3)
    assert result.difference == Interval(0.0, 0.0, 0.0)


def test_a_large_sample_is_resampled_in_chunks_with_the_same_result_every_time() -> None:
    values = [float(i % 7) / 6 for i in range(5000)]  # 2,000 x 5,000 draws: three chunks
    first = bootstrap_mean_ci(values, seed=1)
    assert first == bootstrap_mean_ci(values, seed=1)
    assert first.low < first.estimate < first.high
    assert first.high - first.low < 0.03  # standard error ~0.0046 for n = 5,000
