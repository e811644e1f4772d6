"""Group rollouts: batches of G episodes per environment, each finished trajectory published to
``astra:trajectories``.

A batch is recorded in Redis (``run_store``) and split into one unit per episode on the shared
work queue (``work_queue``): whichever replica has free episode capacity plays a unit, and any
replica reads, counts and cancels the batch. Unit ``u`` is episode ``u % G`` of environment
``u // G``; its GRPO group id is ``{batch_id}:{u // G}`` and its trajectory id is derived from
the batch id and ``u``, so a unit played again (its replica died) publishes the same record id
and the stream keeps the first copy (the publisher deduplicates by record id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from astra_proto import DistractorRef, EnvironmentSpec, JobState, Trajectory
from astra_proto.api.rollout import (
    BatchRequest,
    BatchStatus,
    BatchSummary,
    DistractorOptions,
    EpisodeFailure,
    EpisodeLimits,
    PolicyEndpoint,
)
from astra_rollout.agent import failed_trajectory, run_episode
from astra_rollout.envhost_client import EpisodeBackend
from astra_rollout.policy import PolicyClient
from astra_rollout.registry_client import EnvironmentSource
from astra_rollout.run_policies import RunPolicies
from astra_rollout.run_store import (
    RunStore,
    UnitRecord,
    counter,
    float_counter,
    lifecycle,
    unit_trajectory_id,
)
from astra_rollout.settings import RolloutSettings
from astra_rollout.work_queue import WorkQueue, WorkUnit

logger = logging.getLogger(__name__)

DistractorSelector = Callable[[EnvironmentSpec, DistractorOptions], Awaitable[list[DistractorRef]]]
"""Chooses an episode's distractor tools (``astra_rollout.distractors.select``)."""

TrajectorySink = Callable[[Trajectory], Awaitable[None]]
"""Publishes one trajectory durably (returns once it is on the stream)."""

PolicyVersion = Callable[[], Awaitable[int]]
"""Reads the current policy version (the ``astra:policy`` pointer)."""

HARD_DEADLINE_SLACK_S = 120.0
"""Time an episode gets beyond its conversation limit for creation, scoring and closing."""

SPEC_FETCH_CONCURRENCY = 16
KIND = "batch"


class BatchError(Exception):
    """A batch cannot start; ``status`` is the HTTP status that says why (404, 422, 502)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BatchNotFound(KeyError):
    """No batch with that id (never started, or past its retention)."""


class BatchRunner:
    """Starts, reads and cancels batches and plays their units; publishes every trajectory,
    failed ones included."""

    def __init__(
        self,
        settings: RolloutSettings,
        *,
        store: RunStore,
        queue: WorkQueue,
        episodes: EpisodeBackend,
        registry: EnvironmentSource,
        publish: TrajectorySink,
        policy_version: PolicyVersion,
        policy_http: httpx.AsyncClient,
        distractors: DistractorSelector | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._queue = queue
        self._episodes = episodes
        self._registry = registry
        self._publish = publish
        self._policy_version = policy_version
        self._policy_http = policy_http
        self._distractors = distractors
        self._policies = RunPolicies()
        self._selecting: dict[tuple[str, int], asyncio.Future[str]] = {}
        queue.register(KIND, self)

    async def start(self, request: BatchRequest) -> BatchStatus:
        """Resolve the environments, record the batch and queue its episodes; returns its
        first status.

        Raises ``BatchError``: 422 for an empty query, a batch over ``max_batch_episodes`` or
        no policy endpoint; 404 for an unknown environment; 502 when the registry fails.
        """
        self.policy_client(request.policy)  # refuses an unusable endpoint now
        env_ids = await self._resolve_ids(request)
        total = len(env_ids) * request.group_size
        if total > self.settings.max_batch_episodes:
            raise BatchError(
                f"batch of {total} episodes exceeds max_batch_episodes "
                f"({self.settings.max_batch_episodes})",
                422,
            )
        specs = await self._fetch_specs(env_ids)
        if request.distractors.enabled and self._distractors is None:
            raise BatchError("distractor selection is not available in this service", 422)
        batch_id = f"batch_{uuid.uuid4().hex[:16]}"
        status = BatchStatus(
            id=batch_id,
            state=JobState.RUNNING,
            environments=len(specs),
            group_size=request.group_size,
            total=total,
            created_at=datetime.now(UTC),
        )
        plan = {"request": request.model_dump_json()}
        plan |= {f"env:{i}": spec.model_dump_json() for i, spec in enumerate(specs)}
        await self._store.create(KIND, batch_id, status.model_dump_json(), total, plan)
        try:
            await self._queue.enqueue(KIND, batch_id, total)
        except Exception as exc:
            await self._store.fail(batch_id, f"queueing the episodes failed: {exc}")
            raise
        return await self.status(batch_id)

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's progress and summary so far; raises ``BatchNotFound``."""
        meta = await self._store.meta(batch_id)
        if meta is None or meta.get("kind") != KIND:
            raise BatchNotFound(batch_id)
        status = BatchStatus.model_validate_json(meta["status"])
        failures = await self._store.failures(batch_id)
        return status.model_copy(
            update={
                **lifecycle(meta),
                "done": counter(meta, "done"),
                "failed": counter(meta, "failed"),
                "cancelled": counter(meta, "cancelled"),
                "published": counter(meta, "published"),
                "publish_errors": counter(meta, "publish_errors"),
                "summary": _summary(meta),
                "recent_failures": [EpisodeFailure.model_validate_json(f) for f in failures],
            }
        )

    async def all(self) -> list[BatchStatus]:
        """Every batch within the retention, oldest first."""
        found = []
        for batch_id in await self._store.run_ids(KIND):
            try:
                found.append(await self.status(batch_id))
            except BatchNotFound:  # expired meanwhile
                continue
        return found

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Stop the batch: queued episodes are dropped, episodes in flight are cancelled (and
        their episodes closed) and not published. Raises ``BatchNotFound``; a finished batch
        is returned unchanged."""
        await self.status(batch_id)
        await self._store.cancel(batch_id)
        await self._queue.cancel_local(batch_id)
        return await self.status(batch_id)

    async def wait(self, batch_id: str) -> BatchStatus:
        """Wait until the batch has ended; returns its final status."""
        await self._store.wait(batch_id)
        return await self.status(batch_id)

    async def aclose(self) -> None:
        """Close the policy clients of this replica (service shutdown)."""
        await self._policies.aclose()

    # -- units ------------------------------------------------------------------------------

    async def play_unit(self, unit: WorkUnit) -> None:
        """Play one episode of the batch, publish it and record it (a unit of a batch
        cancelled meanwhile is neither published nor counted)."""
        request, spec = await self._unit_plan(unit)
        env_index = unit.index // request.group_size
        group_id = f"{unit.run_id}:{env_index}"
        trajectory_id = unit_trajectory_id(unit.run_id, unit.index)
        started_at = datetime.now(UTC)
        version = 0
        model = request.policy.model or self.settings.policy_model
        try:
            policy = self._policies.acquire(unit.run_id, lambda: self.policy_client(request.policy))
            try:
                version = await self._policy_version()
                distractors, failure = await self._group_distractors(
                    unit.run_id, env_index, spec, request
                )
                if failure is not None:
                    raise _SelectionFailed(failure)
                trajectory = await self._play(
                    request, spec, policy, group_id, unit, distractors, version, started_at
                )
            finally:
                await self._policies.release(unit.run_id)
        except Exception as exc:  # recorded as a failed episode, never dropped
            trajectory = failed_trajectory(
                spec,
                str(exc) if isinstance(exc, _SelectionFailed) else f"{type(exc).__name__}: {exc}",
                policy_version=version,
                group_id=group_id,
                model=model,
                trajectory_id=trajectory_id,
                started_at=started_at,
            )
        if await self._store.state(unit.run_id) is not JobState.RUNNING:
            return
        await self._record(unit, request, trajectory, env_index)

    async def fail_unit(self, unit: WorkUnit, reason: str) -> None:
        """Publish and record the unit as a failed episode with ``reason``."""
        request, spec = await self._unit_plan(unit)
        env_index = unit.index // request.group_size
        trajectory = failed_trajectory(
            spec,
            reason,
            group_id=f"{unit.run_id}:{env_index}",
            model=request.policy.model or self.settings.policy_model,
            trajectory_id=unit_trajectory_id(unit.run_id, unit.index),
        )
        await self._record(unit, request, trajectory, env_index)

    async def _unit_plan(self, unit: WorkUnit) -> tuple[BatchRequest, EnvironmentSpec]:
        (request_json,) = await self._store.plan(unit.run_id, "request")
        if request_json is None:
            raise BatchNotFound(unit.run_id)
        request = BatchRequest.model_validate_json(request_json)
        (spec_json,) = await self._store.plan(
            unit.run_id, f"env:{unit.index // request.group_size}"
        )
        if spec_json is None:
            raise BatchNotFound(unit.run_id)
        return request, EnvironmentSpec.model_validate_json(spec_json)

    async def _group_distractors(
        self, run_id: str, env_index: int, spec: EnvironmentSpec, request: BatchRequest
    ) -> tuple[list[DistractorRef], str | None]:
        """The group's distractors, chosen once per group (by the first replica to need
        them; the others read the choice from the plan)."""
        if not request.distractors.enabled or self._distractors is None:
            return [], None
        field = f"distractors:{env_index}"
        (held,) = await self._store.plan(run_id, field)
        if held is None:
            key = (run_id, env_index)
            choosing = self._selecting.get(key)
            if choosing is None:
                choosing = asyncio.ensure_future(self._choose(run_id, field, spec, request))
                self._selecting[key] = choosing
                choosing.add_done_callback(lambda _: self._selecting.pop(key, None))
            held = await asyncio.shield(choosing)
        choice = json.loads(held)
        refs = [DistractorRef.model_validate(ref) for ref in choice["refs"]]
        return refs, choice["failure"]

    async def _choose(
        self, run_id: str, field: str, spec: EnvironmentSpec, request: BatchRequest
    ) -> str:
        assert self._distractors is not None
        choice: dict[str, Any]
        try:
            refs = await self._distractors(spec, request.distractors)
            choice = {"refs": [r.model_dump(mode="json") for r in refs], "failure": None}
        except Exception as exc:
            failure = f"distractor selection failed: {type(exc).__name__}: {exc}"
            choice = {"refs": [], "failure": failure}
        return await self._store.plan_once(run_id, field, json.dumps(choice))

    # -- internals --------------------------------------------------------------------------

    def default_limits(self) -> EpisodeLimits:
        """Episode limits from the settings."""
        return EpisodeLimits(
            max_turns=self.settings.max_turns,
            token_budget=self.settings.token_budget,
            timeout_s=self.settings.episode_timeout_s,
        )

    def policy_client(
        self,
        endpoint: PolicyEndpoint,
        *,
        api_key: str | None = None,
        request_token_ids: bool | None = None,
    ) -> PolicyClient:
        """A client of ``endpoint`` (unset fields, the key and whether to ask for token ids
        from the settings); ``BatchError`` 422 when there is no usable endpoint."""
        base_url = endpoint.base_url or self.settings.policy_base_url
        if not base_url:
            raise BatchError(
                "no policy endpoint: give policy.base_url or set ASTRA_ROLLOUT_POLICY_BASE_URL",
                422,
            )
        if not base_url.startswith(("http://", "https://")):
            raise BatchError(f"policy.base_url must be an http(s) URL, not {base_url!r}", 422)
        return PolicyClient(
            http=self._policy_http,
            base_url=base_url,
            model=endpoint.model or self.settings.policy_model,
            api_key=api_key or self.settings.policy_api_key,
            request_token_ids=(
                self.settings.policy_token_ids if request_token_ids is None else request_token_ids
            ),
            retries=self.settings.policy_retries,
            backoff_s=self.settings.policy_backoff_s,
            timeout_s=self.settings.policy_timeout_s,
            direct_http=self.settings.policy_direct_http,
        )

    async def _resolve_ids(self, request: BatchRequest) -> list[str]:
        if request.env_ids is not None:
            return list(request.env_ids)
        assert request.query is not None
        try:
            ids = await self._registry.query(request.query)
        except Exception as exc:
            raise BatchError(f"environment query failed: {exc}", _upstream(exc)) from exc
        if not ids:
            raise BatchError("no environment matches the query", 422)
        return ids

    async def _fetch_specs(self, env_ids: list[str]) -> list[EnvironmentSpec]:
        gate = asyncio.Semaphore(SPEC_FETCH_CONCURRENCY)

        async def fetch(env_id: str) -> EnvironmentSpec:
            async with gate:
                return await self._registry.get(env_id)

        results = await asyncio.gather(*(fetch(i) for i in env_ids), return_exceptions=True)
        specs: list[EnvironmentSpec] = []
        for env_id, result in zip(env_ids, results, strict=True):
            if isinstance(result, BaseException):
                raise BatchError(f"environment {env_id!r}: {result}", _upstream(result)) from result
            specs.append(result)
        return specs

    async def _play(
        self,
        request: BatchRequest,
        spec: EnvironmentSpec,
        policy: PolicyClient,
        group_id: str,
        unit: WorkUnit,
        distractors: list[DistractorRef],
        version: int,
        started_at: datetime,
    ) -> Trajectory:
        limits = request.limits or self.default_limits()
        deadline = limits.timeout_s + HARD_DEADLINE_SLACK_S
        trajectory_id = unit_trajectory_id(unit.run_id, unit.index)
        try:
            async with asyncio.timeout(deadline):
                return await run_episode(
                    spec,
                    policy=policy,
                    episodes=self._episodes,
                    sampling=request.sampling,
                    limits=limits,
                    policy_version=version,
                    group_id=group_id,
                    seed=request.seed + unit.index % request.group_size,
                    distractors=distractors,
                    system_prompt=request.system_prompt,
                    trajectory_id=trajectory_id,
                )
        except TimeoutError:
            return failed_trajectory(
                spec,
                f"episode exceeded its hard deadline of {deadline:.0f} s",
                policy_version=version,
                group_id=group_id,
                model=policy.model,
                trajectory_id=trajectory_id,
                started_at=started_at,
            )

    async def _record(
        self, unit: WorkUnit, request: BatchRequest, trajectory: Trajectory, env_index: int
    ) -> None:
        counters: list[tuple[str, int | float]] = []
        try:
            await self._publish(trajectory)
            counters.append(("published", 1))
        except Exception as exc:
            counters.append(("publish_errors", 1))
            logger.warning("publishing trajectory %s failed: %s", trajectory.id, exc)
        counters.append((f"finish:{trajectory.finish_reason.value}", 1))
        failure = ""
        reward = trajectory.reward
        if trajectory.failure_reason is not None:
            counters.append(("failed", 1))
            failure = EpisodeFailure(
                trajectory_id=trajectory.id,
                env_id=trajectory.env_id,
                reason=trajectory.failure_reason,
            ).model_dump_json()
        else:
            if reward is not None:
                counters += [
                    ("scored", 1),
                    ("reward_sum", float(reward.f1)),
                    ("successes", int(reward.success)),
                ]
            counters += [
                ("finished", 1),
                ("turns_sum", trajectory.turns),
                ("tool_calls_sum", int(trajectory.metadata.get("tool_calls", 0))),
            ]
        await self._store.record(
            unit.run_id,
            unit.index,
            UnitRecord(
                result=trajectory.id,
                counters=counters,
                failure=failure,
                group=str(env_index),
                group_size=request.group_size,
                group_reward=repr(0.0 if reward is None else float(reward.f1)),
            ),
        )


class _SelectionFailed(Exception):
    """The group's distractors could not be chosen (the reason is the message)."""


def _summary(meta: dict[str, str]) -> BatchSummary:
    scored = counter(meta, "scored")
    finished = counter(meta, "finished")
    return BatchSummary(
        scored=scored,
        mean_reward=float_counter(meta, "reward_sum") / scored if scored else None,
        success_rate=counter(meta, "successes") / scored if scored else None,
        mean_turns=counter(meta, "turns_sum") / finished if finished else None,
        mean_tool_calls=counter(meta, "tool_calls_sum") / finished if finished else None,
        finish_reasons={
            name.removeprefix("finish:"): int(value)
            for name, value in meta.items()
            if name.startswith("finish:")
        },
        groups_done=counter(meta, "groups_done"),
        groups_with_variance=counter(meta, "groups_with_variance"),
    )


def _upstream(exc: BaseException) -> int:
    status = getattr(exc, "status", 0)
    if status == 404:
        return 404
    if isinstance(status, int) and 400 <= status < 500:
        return 422
    return 502
