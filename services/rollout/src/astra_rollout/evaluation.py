"""Evaluation suites: a policy played once per entry, greedily, scored per category and entry.

Suites:

- ``heldout-procedural``: procedural environments of the held-out splits (``heldout_entities``:
  entities never seen in training; ``heldout_compositions``: tool compositions never seen).
- ``bfcl-multi-turn``: the BFCL v3 multi-turn categories imported into the registry
  (``astra envs import bfcl``): ``base``, ``miss_func``, ``miss_param``, ``long_context``,
  scored by envhost with BFCL's own checker.

Evaluation trajectories are not published to the training stream: they stay with the result.
An entry whose episode failed counts as reward 0 and not successful, and is listed with why.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import EnvironmentSpec, JobState, Trajectory
from astra_rollout.agent import EpisodeLimits, failed_trajectory, run_episode
from astra_rollout.background import (
    Run,
    RunStatus,
    RunTable,
    hard_deadline_s,
    within_deadline,
)
from astra_rollout.batch_models import PolicyEndpoint
from astra_rollout.envhost_client import EpisodeBackend
from astra_rollout.policy import PolicyClient, SamplingParams
from astra_rollout.registry_client import EnvironmentSource, RegistryQuery

Suite = Literal["heldout-procedural", "bfcl-multi-turn"]

SUITES: dict[str, tuple[str, tuple[str, ...]]] = {
    "heldout-procedural": ("procedural", ("heldout_entities", "heldout_compositions")),
    "bfcl-multi-turn": ("bfcl", ("base", "miss_func", "miss_param", "long_context")),
}
"""Each suite's registry source and its categories."""

REGISTRY_SPLITS = {
    "base": "multi_turn_base",
    "miss_func": "multi_turn_miss_func",
    "miss_param": "multi_turn_miss_param",
    "long_context": "multi_turn_long_context",
}
"""The registry split of a category, where the two names differ (BFCL's categories are
registered under their full names, as ``astra envs import bfcl`` writes them)."""


class EvaluationRequest(BaseModel):
    """Evaluate a policy on a suite: ``limit`` entries per category (the first ones in the
    registry, so two runs see the same entries), greedy sampling unless told otherwise."""

    model_config = ConfigDict(extra="forbid")

    suite: Suite
    categories: list[str] | None = Field(default=None, min_length=1)
    limit: int = Field(default=50, ge=1, le=10_000, description="Entries per category.")
    policy: PolicyEndpoint = Field(default_factory=PolicyEndpoint)
    sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_tokens=512)
    )
    limits: EpisodeLimits | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)
    label: str | None = Field(default=None, max_length=200, description="A name for reports.")

    @model_validator(mode="after")
    def _known_categories(self) -> Self:
        known = SUITES[self.suite][1]
        unknown = [c for c in self.categories or [] if c not in known]
        if unknown:
            raise ValueError(f"unknown categories {unknown} for {self.suite}; known: {list(known)}")
        return self


class EntryScore(BaseModel):
    """One entry's result."""

    env_id: str
    category: str
    reward: float = Field(description="F1 reward (0 for a failed episode).")
    success: bool
    turns: int
    tool_calls: int
    finish_reason: str
    failure_reason: str | None = None
    trajectory_id: str


class CategoryScore(BaseModel):
    """Aggregates of one category."""

    category: str
    entries: int
    failed: int
    mean_reward: float | None
    success_rate: float | None
    mean_turns: float | None
    mean_tool_calls: float | None


class EvaluationStatus(RunStatus):
    """Progress and results of an evaluation."""

    suite: Suite
    label: str | None = None
    model: str
    total: int
    done: int = 0
    categories: list[CategoryScore] = Field(default_factory=list)
    overall: CategoryScore | None = None
    entries: list[EntryScore] = Field(default_factory=list)


class EvaluationError(Exception):
    """An evaluation cannot start; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


PolicyFactory = Callable[[PolicyEndpoint], PolicyClient]


class EvaluationRunner:
    """Runs evaluations in this process (bounded concurrency), keeps their results."""

    def __init__(
        self,
        *,
        episodes: EpisodeBackend,
        registry: EnvironmentSource,
        policy_factory: PolicyFactory,
        default_limits: Callable[[], EpisodeLimits],
        concurrency: int,
        keep: int = 100,
    ) -> None:
        self._episodes = episodes
        self._registry = registry
        self._policy_factory = policy_factory
        self._default_limits = default_limits
        self._slots = asyncio.Semaphore(concurrency)
        self._runs = RunTable[EvaluationStatus](keep)

    async def start(self, request: EvaluationRequest) -> EvaluationStatus:
        """Resolve the suite's entries and start; ``EvaluationError`` when nothing matches
        (e.g. BFCL not imported) or the registry fails."""
        try:
            policy = self._policy_factory(request.policy)
        except Exception as exc:  # no usable endpoint
            raise EvaluationError(str(exc), getattr(exc, "status", 422)) from exc
        source, known = SUITES[request.suite]
        specs: list[tuple[str, EnvironmentSpec]] = []
        for category in request.categories or known:
            split = REGISTRY_SPLITS.get(category, category)
            query = RegistryQuery(source=source, split=split, limit=request.limit)
            try:
                ids = await self._registry.query(query)
                specs += [(category, await self._registry.get(env_id)) for env_id in ids]
            except Exception as exc:
                raise EvaluationError(f"registry query for {category} failed: {exc}", 502) from exc
        if not specs:
            hint = " (import them with `astra envs import bfcl`)" if source == "bfcl" else ""
            raise EvaluationError(f"no environments of suite {request.suite} registered{hint}")
        status = EvaluationStatus(
            id=f"eval_{uuid.uuid4().hex[:16]}",
            suite=request.suite,
            label=request.label,
            model=policy.model,
            state=JobState.RUNNING,
            total=len(specs),
            created_at=datetime.now(UTC),
        )
        limits = request.limits or self._default_limits()
        order = list(request.categories or known)

        async def work(run: Run[EvaluationStatus]) -> None:
            async def play(category: str, spec: EnvironmentSpec) -> None:
                async with self._slots:
                    trajectory = await within_deadline(
                        run_episode(
                            spec,
                            policy=policy,
                            episodes=self._episodes,
                            sampling=request.sampling,
                            limits=limits,
                            system_prompt=request.system_prompt,
                        ),
                        hard_deadline_s(limits.timeout_s),
                        lambda reason: failed_trajectory(spec, reason, model=policy.model),
                    )
                run.trajectories[trajectory.id] = trajectory
                run.status.entries.append(entry_score(category, trajectory))
                run.status.done += 1
                run.status.categories, run.status.overall = aggregate(run.status.entries, order)

            try:
                await asyncio.gather(*(play(category, spec) for category, spec in specs))
            finally:
                await policy.aclose()

        self._runs.start(status, work)
        return self.status(status.id)

    def status(self, evaluation_id: str) -> EvaluationStatus:
        """Progress and scores so far; ``KeyError`` when unknown."""
        return self._runs.status(evaluation_id)

    def trajectory(self, evaluation_id: str, trajectory_id: str) -> Trajectory:
        """One trajectory of the evaluation; ``KeyError`` when unknown."""
        return self._runs.get(evaluation_id).trajectories[trajectory_id]

    def all(self) -> list[EvaluationStatus]:
        """Every evaluation this process keeps, oldest first (without per-entry rows)."""
        return [
            run.status.model_copy(update={"entries": []}, deep=True) for run in self._runs.runs()
        ]

    async def wait(self, evaluation_id: str) -> EvaluationStatus:
        """Wait for the evaluation to end."""
        return await self._runs.wait(evaluation_id)

    async def cancel(self, evaluation_id: str) -> EvaluationStatus:
        """Stop it; finished entries keep their scores."""
        return await self._runs.cancel(evaluation_id)

    async def aclose(self) -> None:
        """Cancel every running evaluation."""
        await self._runs.aclose()


def entry_score(category: str, trajectory: Trajectory) -> EntryScore:
    """The score of one played entry; a failed episode scores 0."""
    reward = trajectory.reward.f1 if trajectory.reward is not None else 0.0
    return EntryScore(
        env_id=trajectory.env_id,
        category=category,
        reward=reward,
        success=trajectory.reward is not None and trajectory.reward.success,
        turns=trajectory.turns,
        tool_calls=int(trajectory.metadata.get("tool_calls", 0)),
        finish_reason=trajectory.finish_reason.value,
        failure_reason=trajectory.failure_reason,
        trajectory_id=trajectory.id,
    )


def aggregate(
    entries: list[EntryScore], order: Sequence[str] = ()
) -> tuple[list[CategoryScore], CategoryScore | None]:
    """Scores per category (in ``order``, then any other in first-seen order; categories
    without entries yet are left out) and over all entries."""
    by_category: dict[str, list[EntryScore]] = {name: [] for name in order}
    for entry in entries:
        by_category.setdefault(entry.category, []).append(entry)
    categories = [_category(name, rows) for name, rows in by_category.items() if rows]
    return categories, (_category("overall", entries) if entries else None)


def _category(name: str, rows: list[EntryScore]) -> CategoryScore:
    def mean(values: list[float]) -> float | None:
        return round(statistics.fmean(values), 4) if values else None

    return CategoryScore(
        category=name,
        entries=len(rows),
        failed=sum(r.failure_reason is not None for r in rows),
        mean_reward=mean([r.reward for r in rows]),
        success_rate=mean([float(r.success) for r in rows]),
        mean_turns=mean([float(r.turns) for r in rows]),
        mean_tool_calls=mean([float(r.tool_calls) for r in rows]),
    )
