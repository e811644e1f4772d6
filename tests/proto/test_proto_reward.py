"""RewardBreakdown.compute: the trajectory-level F1 over sub-questions solved and calls made."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astra_proto import RewardBreakdown
from astra_proto.rewards import PRECISION_EPSILON as EPS

PROPERTY_SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)


def ids(count: int) -> list[str]:
    return [f"q{i}" for i in range(count)]


def compute(n: int, n_solved: int, calls: int) -> RewardBreakdown:
    return RewardBreakdown.compute(n_subquestions=n, solved_ids=ids(n_solved), n_calls=calls)


def test_formula() -> None:
    reward = compute(n=4, n_solved=3, calls=5)
    recall, precision = 3 / 4, 3 / (5 + EPS)
    assert reward.recall == recall
    assert reward.precision == precision
    assert reward.f1 == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-12)
    assert (reward.n_subquestions, reward.n_solved, reward.n_calls) == (4, 3, 5)


def test_nothing_solved_scores_zero() -> None:
    reward = compute(n=3, n_solved=0, calls=7)
    assert (reward.precision, reward.recall, reward.f1) == (0.0, 0.0, 0.0)
    assert compute(n=3, n_solved=0, calls=0).f1 == 0.0


def test_no_sub_questions_scores_zero() -> None:
    reward = compute(n=0, n_solved=0, calls=2)
    assert (reward.precision, reward.recall, reward.f1) == (0.0, 0.0, 0.0)


def test_solving_everything_with_one_call_each_is_almost_one() -> None:
    assert compute(n=3, n_solved=3, calls=3).f1 == pytest.approx(1.0, abs=1e-6)
    assert compute(n=3, n_solved=3, calls=3).f1 < 1.0  # ε keeps c in the denominator


def test_duplicate_solved_ids_count_once() -> None:
    reward = RewardBreakdown.compute(n_subquestions=3, solved_ids=["b", "a", "b", "a"], n_calls=2)
    assert reward.n_solved == 2
    assert reward.solved_ids == ["a", "b"]
    assert reward.recall == 2 / 3


def test_more_solved_than_exist_is_rejected() -> None:
    with pytest.raises(ValueError, match="more sub-questions solved than exist"):
        compute(n=2, n_solved=3, calls=3)


@pytest.mark.parametrize(("n", "calls"), [(-1, 0), (1, -1)])
def test_negative_counts_are_rejected(n: int, calls: int) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        RewardBreakdown.compute(n_subquestions=n, solved_ids=[], n_calls=calls)


def test_precision_is_capped_when_solved_without_calls() -> None:
    # A no-tool leaf solved by the final answer: one solved, zero calls.
    reward = RewardBreakdown.compute(
        n_subquestions=1, solved_ids=["leaf"], n_calls=0, final_answer_correct=True
    )
    assert reward.precision == 1.0
    assert reward.f1 == 1.0
    assert reward.final_answer_correct is True
    # Two solved with one call: p = 1 (capped), r = 2/3, F1 = 2r / (1 + r).
    assert compute(n=3, n_solved=2, calls=1).f1 == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))


def test_computed_reward_round_trips() -> None:
    reward = compute(n=5, n_solved=2, calls=9)
    assert RewardBreakdown.model_validate_json(reward.model_dump_json()) == reward


# --- properties -----------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=40)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, int]:
    """(n, n̂, c) with 0 ≤ n̂ ≤ n."""
    n = draw(counts)
    return n, draw(st.integers(min_value=0, max_value=n)), draw(counts)


@PROPERTY_SETTINGS
@given(scenarios())
def test_scores_are_bounded(scenario: tuple[int, int, int]) -> None:
    reward = compute(*scenario)
    for score in (reward.precision, reward.recall, reward.f1):
        assert 0.0 <= score <= 1.0
    assert reward.f1 <= min(1.0, 2 * min(reward.precision, reward.recall)) + 1e-12


@PROPERTY_SETTINGS
@given(scenarios())
def test_f1_is_the_harmonic_mean(scenario: tuple[int, int, int]) -> None:
    n, n_solved, calls = scenario
    reward = compute(*scenario)
    p, r = reward.precision, reward.recall
    if n_solved == 0:
        assert reward.f1 == 0.0
        return
    assert reward.f1 == pytest.approx(2 * p * r / (p + r), rel=1e-12)
    assert min(p, r) - 1e-12 <= reward.f1 <= max(p, r) + 1e-12
    if n_solved <= calls:  # uncapped: 2pr/(p+r) = 2n̂/(n+c+ε)
        assert reward.f1 == pytest.approx(2 * n_solved / (n + calls + EPS), rel=1e-9)


@PROPERTY_SETTINGS
@given(scenarios())
def test_f1_is_symmetric_in_sub_questions_and_calls(scenario: tuple[int, int, int]) -> None:
    # Swapping n and c swaps recall and precision, and the harmonic mean does not care.
    n, n_solved, calls = scenario
    if n_solved > calls:
        return
    swapped = compute(n=calls, n_solved=n_solved, calls=n)
    assert swapped.f1 == pytest.approx(compute(*scenario).f1, rel=1e-5, abs=1e-12)


@PROPERTY_SETTINGS
@given(scenarios())
def test_solving_more_raises_the_reward(scenario: tuple[int, int, int]) -> None:
    n, n_solved, calls = scenario
    if n_solved == n:
        return
    assert compute(n, n_solved + 1, calls).f1 > compute(n, n_solved, calls).f1


@PROPERTY_SETTINGS
@given(scenarios())
def test_extra_calls_never_raise_the_reward(scenario: tuple[int, int, int]) -> None:
    n, n_solved, calls = scenario
    assert compute(n, n_solved, calls + 1).f1 <= compute(n, n_solved, calls).f1


@pytest.mark.parametrize(
    ("n", "n_solved", "calls", "success"),
    [
        (3, 3, 3, True),  # every sub-question, one call each
        (3, 3, 2, True),  # fewer calls than sub-questions (one call answered two)
        (3, 3, 4, False),  # one wasted call
        (10_000, 10_000, 10_001, False),  # one wasted call among many: F1 0.99995, not a success
        (3, 2, 2, False),  # one sub-question unsolved
        (0, 0, 0, False),  # nothing to solve
    ],
)
def test_success_means_perfect_up_to_epsilon(
    n: int, n_solved: int, calls: int, success: bool
) -> None:
    assert compute(n, n_solved, calls).success is success


def test_a_verifier_pass_is_a_success() -> None:
    passed = RewardBreakdown(
        n_subquestions=1, n_solved=1, n_calls=9, precision=1.0, recall=1.0, f1=1.0
    )
    failed = passed.model_copy(update={"n_solved": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0})
    assert passed.success
    assert not failed.success
