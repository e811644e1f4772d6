"""Evaluation suites: a policy played once per entry, greedily, scored per category and entry.

Suites:

- ``heldout-procedural``: procedural environments of the held-out splits (``heldout_entities``:
  entities never seen in training; ``heldout_compositions``: tool compositions never seen).
- ``bfcl-multi-turn``: the BFCL v3 multi-turn categories imported into the registry
  (``astra envs import bfcl``): ``base``, ``miss_func``, ``miss_param``, ``long_context``,
  scored by envhost with BFCL's own checker.

Evaluation trajectories are not published to the training stream: they stay with the result,
in Redis, for ``run_retention_s``. Each entry is one unit of the shared work queue, played by
whichever replica is free; any replica reads and cancels the evaluation.
An entry whose episode failed counts as reward 0 and not successful, and is listed with why.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from astra_proto import EnvironmentSpec, JobState, Trajectory
from astra_proto.api.rollout import (
    SUITES,
    CategoryScore,
    EntryScore,
    EpisodeLimits,
    EvaluationRequest,
    EvaluationStatus,
    PolicyEndpoint,
    RegistryQuery,
)
from astra_rollout.agent import failed_trajectory, run_episode
from astra_rollout.background import hard_deadline_s, within_deadline
from astra_rollout.envhost_client import EpisodeBackend
from astra_rollout.policy import PolicyClient
from astra_rollout.registry_client import EnvironmentSource
from astra_rollout.run_policies import RunPolicies
from astra_rollout.run_store import RunStore, UnitRecord, counter, lifecycle, unit_trajectory_id
from astra_rollout.work_queue import WorkQueue, WorkUnit

REGISTRY_SPLITS = {
    "base": "multi_turn_base",
    "miss_func": "multi_turn_miss_func",
    "miss_param": "multi_turn_miss_param",
    "long_context": "multi_turn_long_context",
}
"""The registry split of a category, where the two names differ (BFCL's categories are
registered under their full names, as ``astra envs import bfcl`` writes them)."""


class EvaluationError(Exception):
    """An evaluation cannot start; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


PolicyFactory = Callable[[PolicyEndpoint], PolicyClient]
KIND = "evaluation"


class EvaluationRunner:
    """Starts, reads and cancels evaluations recorded in Redis; plays their entries as units
    of the shared work queue (one per entry), whichever replica takes them."""

    def __init__(
        self,
        *,
        store: RunStore,
        queue: WorkQueue,
        episodes: EpisodeBackend,
        registry: EnvironmentSource,
        policy_factory: PolicyFactory,
        default_limits: Callable[[], EpisodeLimits],
    ) -> None:
        self._store = store
        self._queue = queue
        self._episodes = episodes
        self._registry = registry
        self._policy_factory = policy_factory
        self._default_limits = default_limits
        self._policies = RunPolicies()
        queue.register(KIND, self)

    async def start(self, request: EvaluationRequest) -> EvaluationStatus:
        """Resolve the suite's entries, record the evaluation and queue its entries;
        ``EvaluationError`` when nothing matches (e.g. BFCL not imported) or the registry
        fails."""
        try:
            policy = self._policy_factory(request.policy)
        except Exception as exc:  # no usable endpoint
            raise EvaluationError(str(exc), getattr(exc, "status", 422)) from exc
        await policy.aclose()
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
        plan = {"request": request.model_dump_json()}
        plan |= {
            f"entry:{i}": _Entry(category=category, spec=spec).model_dump_json()
            for i, (category, spec) in enumerate(specs)
        }
        await self._store.create(KIND, status.id, status.model_dump_json(), len(specs), plan)
        try:
            await self._queue.enqueue(KIND, status.id, len(specs))
        except Exception as exc:
            await self._store.fail(status.id, f"queueing the entries failed: {exc}")
            raise
        return await self.status(status.id)

    async def status(self, evaluation_id: str, *, with_entries: bool = True) -> EvaluationStatus:
        """Progress and scores so far; ``KeyError`` when unknown."""
        meta = await self._store.meta(evaluation_id)
        if meta is None or meta.get("kind") != KIND:
            raise KeyError(evaluation_id)
        status = EvaluationStatus.model_validate_json(meta["status"])
        (request_json,) = await self._store.plan(evaluation_id, "request")
        order = list(status_categories(request_json))
        rows = await self._store.results(evaluation_id, await self._store.ordered(evaluation_id))
        entries = [EntryScore.model_validate_json(row) for row in rows if row is not None]
        categories, overall = aggregate(entries, order)
        return status.model_copy(
            update={
                **lifecycle(meta),
                "done": counter(meta, "done"),
                "categories": categories,
                "overall": overall,
                "entries": entries if with_entries else [],
            }
        )

    async def trajectory(self, evaluation_id: str, trajectory_id: str) -> Trajectory:
        """One trajectory of the evaluation; ``KeyError`` when unknown."""
        (found,) = await self._store.trajectories(evaluation_id, [trajectory_id])
        if found is None:
            raise KeyError(trajectory_id)
        return found

    async def all(self) -> list[EvaluationStatus]:
        """Every evaluation within the retention, oldest first (without per-entry rows)."""
        found = []
        for evaluation_id in await self._store.run_ids(KIND):
            try:
                found.append(await self.status(evaluation_id, with_entries=False))
            except KeyError:  # expired meanwhile
                continue
        return found

    async def wait(self, evaluation_id: str) -> EvaluationStatus:
        """Wait for the evaluation to end."""
        await self._store.wait(evaluation_id)
        return await self.status(evaluation_id)

    async def cancel(self, evaluation_id: str) -> EvaluationStatus:
        """Stop it; finished entries keep their scores."""
        await self.status(evaluation_id, with_entries=False)
        await self._store.cancel(evaluation_id)
        await self._queue.cancel_local(evaluation_id)
        return await self.status(evaluation_id)

    async def aclose(self) -> None:
        """Close this replica's policy clients."""
        await self._policies.aclose()

    # -- units ------------------------------------------------------------------------------

    async def play_unit(self, unit: WorkUnit) -> None:
        """Play one entry greedily (as the request says) and record its score."""
        request, entry = await self._unit_plan(unit)
        spec = entry.spec
        trajectory_id = unit_trajectory_id(unit.run_id, unit.index)
        limits = request.limits or self._default_limits()
        try:
            policy = self._policies.acquire(
                unit.run_id, lambda: self._policy_factory(request.policy)
            )
        except Exception as exc:  # this replica has no usable endpoint: a failed entry
            await self.fail_unit(unit, f"{type(exc).__name__}: {exc}")
            return
        try:
            trajectory = await within_deadline(
                run_episode(
                    spec,
                    policy=policy,
                    episodes=self._episodes,
                    sampling=request.sampling,
                    limits=limits,
                    system_prompt=request.system_prompt,
                    trajectory_id=trajectory_id,
                ),
                hard_deadline_s(limits.timeout_s),
                lambda reason: failed_trajectory(
                    spec, reason, model=policy.model, trajectory_id=trajectory_id
                ),
            )
        finally:
            await self._policies.release(unit.run_id)
        await self._record(unit, entry.category, trajectory)

    async def fail_unit(self, unit: WorkUnit, reason: str) -> None:
        """Record the entry as a failed episode (reward 0) with ``reason``."""
        request, entry = await self._unit_plan(unit)
        model = request.policy.model or None
        trajectory = failed_trajectory(
            entry.spec,
            reason,
            model=model,
            trajectory_id=unit_trajectory_id(unit.run_id, unit.index),
        )
        await self._record(unit, entry.category, trajectory)

    async def _unit_plan(self, unit: WorkUnit) -> tuple[EvaluationRequest, _Entry]:
        request_json, entry_json = await self._store.plan(
            unit.run_id, "request", f"entry:{unit.index}"
        )
        if request_json is None or entry_json is None:
            raise KeyError(unit.run_id)
        return (
            EvaluationRequest.model_validate_json(request_json),
            _Entry.model_validate_json(entry_json),
        )

    async def _record(self, unit: WorkUnit, category: str, trajectory: Trajectory) -> None:
        await self._store.record(
            unit.run_id,
            unit.index,
            UnitRecord(
                result=entry_score(category, trajectory).model_dump_json(),
                order=str(unit.index),
                trajectory=trajectory,
            ),
        )


class _Entry(BaseModel):
    """One entry of an evaluation's plan."""

    category: str
    spec: EnvironmentSpec


def status_categories(request_json: str | None) -> Sequence[str]:
    """The categories of an evaluation request, in the order asked (or the suite's)."""
    if request_json is None:
        return ()
    request = EvaluationRequest.model_validate_json(request_json)
    return request.categories or SUITES[request.suite][1]


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
