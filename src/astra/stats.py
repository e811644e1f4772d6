"""Confidence intervals for evaluation scores: a bootstrap of the mean, Wilson's interval for a
proportion, and a paired bootstrap of the difference between two evaluations of the same tasks.

Every function is pure and deterministic: the bootstrap draws from a generator seeded by the
caller (``seed``), so the same scores always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypeVar

import numpy as np
import numpy.typing as npt

RESAMPLES = 2000
"""Bootstrap resamples unless told otherwise."""
SEED = 0
"""Bootstrap seed unless told otherwise."""

TaskId = TypeVar("TaskId", bound=Hashable)


@dataclass(frozen=True)
class Interval:
    """An estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds (inclusive)."""
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PairedDifference:
    """The mean of ``after - before`` over the tasks both evaluations scored."""

    difference: Interval
    paired: int
    """Tasks scored by both evaluations (the n of the interval)."""
    unpaired: int
    """Tasks scored by only one of the two, left out."""

    @property
    def within_noise(self) -> bool:
        """Whether the interval of the difference contains 0."""
        return self.difference.contains(0.0)

    def verdict(self, before: str, after: str) -> str:
        """``"within noise"``, ``"<after> above <before>"`` or ``"<after> below <before>"``."""
        if self.within_noise:
            return "within noise"
        return f"{after} {'above' if self.difference.estimate > 0 else 'below'} {before}"


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean of ``values`` with its percentile-bootstrap interval (``resamples`` resamples
    with replacement, seeded); ``ValueError`` when ``values`` is empty."""
    sample = _sample(values, "bootstrap_mean_ci")
    _check(confidence, resamples)
    estimate = math.fsum(sample.tolist()) / sample.size
    if sample.min() == sample.max():  # every resample has this mean: the interval is the point
        return Interval(estimate, estimate, estimate)
    rng = np.random.default_rng(seed)
    # Resampled in chunks of at most ~4M draws, so a large evaluation stays small in memory.
    chunk = max(1, 4_000_000 // sample.size)
    means = np.concatenate(
        [
            sample[
                rng.integers(0, sample.size, size=(min(chunk, resamples - start), sample.size))
            ].mean(axis=1)
            for start in range(0, resamples, chunk)
        ]
    )
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> Interval:
    """The proportion ``successes / n`` with Wilson's score interval (sensible at 0 and 1 and
    for few trials, unlike the normal approximation); ``ValueError`` when ``n`` is 0."""
    if n <= 0:
        raise ValueError("wilson_interval needs at least one trial (n is 0)")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: {successes} of {n}")
    _check(confidence, 1)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 or n successes the bound is 0 or 1 exactly (the formula leaves rounding residue).
    low = 0.0 if successes == 0 else centre - half
    high = 1.0 if successes == n else centre + half
    return Interval(p, low, high)


def paired_difference(
    before: Mapping[TaskId, float],
    after: Mapping[TaskId, float],
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """Mean of ``after[k] - before[k]`` over the keys (task ids) of both, with its paired
    bootstrap interval (tasks resampled, each keeping its own pair of scores); keys of only
    one side are left out and counted. ``ValueError`` when no key is shared."""
    shared = [key for key in before if key in after]
    if not shared:
        raise ValueError(
            f"paired_difference needs tasks scored by both evaluations; none of "
            f"{len(before)} and {len(after)} are shared"
        )
    differences = [after[key] - before[key] for key in shared]
    interval = bootstrap_mean_ci(differences, confidence=confidence, resamples=resamples, seed=seed)
    unpaired = len(before) + len(after) - 2 * len(shared)
    return PairedDifference(interval, paired=len(shared), unpaired=unpaired)


def _sample(values: Sequence[float], name: str) -> npt.NDArray[np.float64]:
    sample = np.asarray(values, dtype=float)
    if sample.ndim != 1 or sample.size == 0:
        raise ValueError(f"{name} needs at least one value (got an empty sample)")
    if not np.isfinite(sample).all():
        raise ValueError(f"{name} needs finite values")
    return sample


def _check(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1): {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1: {resamples}")
