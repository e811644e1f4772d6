"""Group rollouts: batches of G episodes per environment, run with bounded concurrency, each
finished trajectory published to ``astra:trajectories``.

Batch state lives in the memory of the rollout process that runs the batch (a batch is work in
flight, not a record: the trajectories on the stream are the record). A restarted process
forgets its batches; the trajectories it published stay. One semaphore bounds the episodes in
flight across all batches: a batch starts an episode only when a slot is free (backpressure),
so a batch of 100,000 episodes holds at most ``max_concurrent_episodes`` tasks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import statistics
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from astra_proto import DistractorRef, EnvironmentSpec, JobState, Trajectory
from astra_rollout.agent import EpisodeLimits, failed_trajectory, run_episode
from astra_rollout.batch_models import (
    BatchRequest,
    BatchStatus,
    BatchSummary,
    DistractorOptions,
    EpisodeFailure,
    PolicyEndpoint,
)
from astra_rollout.envhost_client import EpisodeBackend
from astra_rollout.policy import PolicyClient
from astra_rollout.registry_client import EnvironmentSource
from astra_rollout.settings import RolloutSettings

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
RECENT_FAILURES = 20


class BatchError(Exception):
    """A batch cannot start; ``status`` is the HTTP status that says why (404, 422, 502)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BatchNotFound(KeyError):
    """No batch with that id in this process."""


@dataclass
class _Batch:
    status: BatchStatus
    request: BatchRequest
    specs: list[EnvironmentSpec]
    policy: PolicyClient
    limits: EpisodeLimits
    task: asyncio.Task[None] | None = None
    episodes: set[asyncio.Task[None]] = field(default_factory=set)
    rewards: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    tool_calls: list[int] = field(default_factory=list)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    group_rewards: dict[str, list[float | None]] = field(default_factory=dict)
    failures: deque[EpisodeFailure] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))


class BatchRunner:
    """Starts, tracks and cancels batches; publishes every trajectory, failed ones included."""

    def __init__(
        self,
        settings: RolloutSettings,
        *,
        episodes: EpisodeBackend,
        registry: EnvironmentSource,
        publish: TrajectorySink,
        policy_version: PolicyVersion,
        policy_http: httpx.AsyncClient,
        distractors: DistractorSelector | None = None,
    ) -> None:
        self.settings = settings
        self._episodes = episodes
        self._registry = registry
        self._publish = publish
        self._policy_version = policy_version
        self._policy_http = policy_http
        self._distractors = distractors
        self._slots = asyncio.Semaphore(settings.max_concurrent_episodes)
        self._batches: dict[str, _Batch] = {}

    async def start(self, request: BatchRequest) -> BatchStatus:
        """Resolve the environments and start the batch; returns its first status.

        Raises ``BatchError``: 422 for an empty query, a batch over ``max_batch_episodes`` or
        no policy endpoint; 404 for an unknown environment; 502 when the registry fails.
        """
        policy = self.policy_client(request.policy)
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
        limits = request.limits or self.default_limits()
        batch = _Batch(status=status, request=request, specs=specs, policy=policy, limits=limits)
        self._batches[batch_id] = batch
        self._forget_old()
        batch.task = asyncio.create_task(self._run(batch), name=batch_id)
        return self.status(batch_id)

    def status(self, batch_id: str) -> BatchStatus:
        """The batch's progress and summary so far; raises ``BatchNotFound``."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        status = batch.status
        status.summary = _summary(batch)
        status.recent_failures = list(batch.failures)
        return status.model_copy(deep=True)

    def all(self) -> list[BatchStatus]:
        """Every batch this process knows, oldest first."""
        return [self.status(batch_id) for batch_id in list(self._batches)]

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Stop the batch: episodes in flight are cancelled (and their episodes closed) and
        not published. Raises ``BatchNotFound``; a finished batch is returned unchanged."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        if batch.task is not None and not batch.task.done():
            batch.task.cancel()
            await asyncio.gather(batch.task, return_exceptions=True)
        return self.status(batch_id)

    async def wait(self, batch_id: str) -> BatchStatus:
        """Wait until the batch has ended; returns its final status."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        if batch.task is not None:
            await asyncio.gather(batch.task, return_exceptions=True)
        return self.status(batch_id)

    async def aclose(self) -> None:
        """Cancel every running batch (service shutdown)."""
        for batch_id in list(self._batches):
            await self.cancel(batch_id)

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

    async def _run(self, batch: _Batch) -> None:
        status = batch.status
        try:
            for index, spec in enumerate(batch.specs):
                group_id = f"{status.id}:{index}"
                batch.group_rewards[group_id] = []
                distractors, failure = await self._select_distractors(spec, batch)
                for g in range(batch.request.group_size):
                    await self._slots.acquire()
                    task = asyncio.create_task(
                        self._episode(batch, spec, group_id, g, distractors, failure)
                    )
                    batch.episodes.add(task)
                    # In a done callback: a task cancelled before it ever ran must free its slot.
                    task.add_done_callback(functools.partial(self._episode_done, batch))
            while batch.episodes:
                await asyncio.gather(*list(batch.episodes))
            status.state = JobState.SUCCEEDED
        except asyncio.CancelledError:
            for task in list(batch.episodes):
                task.cancel()
            await asyncio.gather(*list(batch.episodes), return_exceptions=True)
            status.cancelled = status.total - status.done
            status.state = JobState.CANCELLED
        except Exception as exc:  # a bug in the runner itself: say so on the batch
            logger.exception("batch %s failed", status.id)
            for task in list(batch.episodes):
                task.cancel()
            await asyncio.gather(*list(batch.episodes), return_exceptions=True)
            status.error = f"{type(exc).__name__}: {exc}"
            status.state = JobState.FAILED
        finally:
            status.finished_at = datetime.now(UTC)
            await batch.policy.aclose()

    async def _select_distractors(
        self, spec: EnvironmentSpec, batch: _Batch
    ) -> tuple[list[DistractorRef], str | None]:
        if not batch.request.distractors.enabled or self._distractors is None:
            return [], None
        try:
            return await self._distractors(spec, batch.request.distractors), None
        except Exception as exc:
            return [], f"distractor selection failed: {type(exc).__name__}: {exc}"

    async def _episode(
        self,
        batch: _Batch,
        spec: EnvironmentSpec,
        group_id: str,
        index: int,
        distractors: list[DistractorRef],
        failure: str | None,
    ) -> None:
        started_at = datetime.now(UTC)
        version = 0
        try:
            version = await self._policy_version()
            if failure is not None:
                raise RuntimeError(failure)
            trajectory = await self._play(
                batch, spec, group_id, index, distractors, version, started_at
            )
        except Exception as exc:  # recorded as a failed episode, never dropped
            trajectory = failed_trajectory(
                spec,
                str(exc) if failure else f"{type(exc).__name__}: {exc}",
                policy_version=version,
                group_id=group_id,
                model=batch.policy.model,
                started_at=started_at,
            )
        await self._record(batch, trajectory, group_id)

    def _episode_done(self, batch: _Batch, task: asyncio.Task[None]) -> None:
        batch.episodes.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("episode task of %s failed", batch.status.id, exc_info=task.exception())

    async def _play(
        self,
        batch: _Batch,
        spec: EnvironmentSpec,
        group_id: str,
        index: int,
        distractors: list[DistractorRef],
        version: int,
        started_at: datetime,
    ) -> Trajectory:
        request = batch.request
        deadline = batch.limits.timeout_s + HARD_DEADLINE_SLACK_S
        try:
            async with asyncio.timeout(deadline):
                return await run_episode(
                    spec,
                    policy=batch.policy,
                    episodes=self._episodes,
                    sampling=request.sampling,
                    limits=batch.limits,
                    policy_version=version,
                    group_id=group_id,
                    seed=request.seed + index,
                    distractors=distractors,
                    system_prompt=request.system_prompt,
                )
        except TimeoutError:
            return failed_trajectory(
                spec,
                f"episode exceeded its hard deadline of {deadline:.0f} s",
                policy_version=version,
                group_id=group_id,
                model=batch.policy.model,
                started_at=started_at,
            )

    async def _record(self, batch: _Batch, trajectory: Trajectory, group_id: str) -> None:
        status = batch.status
        try:
            await self._publish(trajectory)
            status.published += 1
        except Exception as exc:
            status.publish_errors += 1
            logger.warning("publishing trajectory %s failed: %s", trajectory.id, exc)
        status.done += 1
        reward = trajectory.reward.f1 if trajectory.reward is not None else None
        batch.group_rewards[group_id].append(reward)
        batch.finish_reasons[trajectory.finish_reason.value] += 1
        if trajectory.failure_reason is not None:
            status.failed += 1
            batch.failures.append(
                EpisodeFailure(
                    trajectory_id=trajectory.id,
                    env_id=trajectory.env_id,
                    reason=trajectory.failure_reason,
                )
            )
            return
        if trajectory.reward is not None:
            batch.rewards.append(trajectory.reward.f1)
            batch.successes.append(trajectory.reward.success)
        batch.turns.append(trajectory.turns)
        batch.tool_calls.append(int(trajectory.metadata.get("tool_calls", 0)))

    def _forget_old(self) -> None:
        finished = [b for b in self._batches.values() if b.status.state.terminal]
        for batch in finished[: max(0, len(finished) - self.settings.max_finished_batches)]:
            del self._batches[batch.status.id]


def _summary(batch: _Batch) -> BatchSummary:
    groups_done = [r for r in batch.group_rewards.values() if len(r) == batch.request.group_size]
    return BatchSummary(
        scored=len(batch.rewards),
        mean_reward=statistics.fmean(batch.rewards) if batch.rewards else None,
        success_rate=(sum(batch.successes) / len(batch.successes) if batch.successes else None),
        mean_turns=statistics.fmean(batch.turns) if batch.turns else None,
        mean_tool_calls=statistics.fmean(batch.tool_calls) if batch.tool_calls else None,
        finish_reasons=dict(batch.finish_reasons),
        groups_done=len(groups_done),
        groups_with_variance=sum(
            len({0.0 if r is None else r for r in rewards}) > 1 for rewards in groups_done
        ),
    )


def _upstream(exc: BaseException) -> int:
    status = getattr(exc, "status", 0)
    if status == 404:
        return 404
    if isinstance(status, int) and 400 <= status < 500:
        return 422
    return 502
