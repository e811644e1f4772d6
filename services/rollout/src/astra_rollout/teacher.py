"""Teacher runs: a teacher model plays synthesized tasks against tool servers, for SFT data.

A task names a tool server. A server with an MCP URL runs its tools for real: each trajectory
opens its own MCP client (the SDK's protocol negotiation, so servers on either the sessionless
revision or the older session handshake work, and a server that keys its state on the
connection, like envhost's ``/envs/{id}/mcp``, gives each trajectory a fresh state). A server
known only by its documents goes to the LLM tool emulator of the synth service (``POST
/v1/emulate``), which sees the tool's definition, the call, the server's description and the
trajectory's last five calls, and fails a configurable share of calls on purpose.

The agent loop is the rollout's own (``run_episode``), with the teacher's limits (20 LLM calls
and 240 s per trajectory by default). Teacher trajectories carry no reward (the synth judge
grades them) and are not published to the training stream: they stay with the run (in Redis, for
``run_retention_s``) and are read page by page over REST, from any replica. Each task is one
unit of the shared work queue; a run's ``concurrency`` bounds its trajectories in flight on each
replica.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel

from astra_common.clients.synth import SynthClient
from astra_proto import Episode, EpisodeRequest, JobState, RewardBreakdown, ToolSpec, Trajectory
from astra_proto.api.rollout import (
    EmulatorOptions,
    EpisodeLimits,
    PolicyEndpoint,
    SamplingParams,
    TaskFailure,
    TeacherRunRequest,
    TeacherRunStatus,
    TeacherServer,
    TeacherTask,
    TrajectoryPage,
)
from astra_rollout.agent import failed_trajectory, run_episode
from astra_rollout.background import hard_deadline_s, within_deadline
from astra_rollout.envhost_client import McpToolSession, ToolSession
from astra_rollout.policy import PolicyClient
from astra_rollout.run_policies import RunPolicies
from astra_rollout.run_store import RunStore, UnitRecord, counter, lifecycle, unit_trajectory_id
from astra_rollout.teacher_emulator import EmulatedSession
from astra_rollout.work_queue import WorkQueue, WorkUnit

RECENT_FAILURES = 20
EMULATOR_TIMEOUT_S = 60.0
"""How long one call of synth's tool emulator (an LLM call) may take."""
MCP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


@dataclass(frozen=True)
class PlayTask:
    """A task on its server, as the agent loop plays it (an ``AgentTask``)."""

    source: TeacherTask
    server: TeacherServer

    @property
    def id(self) -> str:
        return self.source.id

    @property
    def task(self) -> str:
        return self.source.question

    @property
    def followup_turns(self) -> Sequence[str]:
        return self.source.followup_turns

    def tool_specs(self) -> list[ToolSpec]:
        return list(self.server.tools)


@dataclass
class ServerEpisodes:
    """The ``EpisodeBackend`` of one teacher trajectory on one server (no verifier)."""

    play: PlayTask
    synth: SynthClient
    mcp_headers: dict[str, str]
    options: EmulatorOptions
    seed: int
    emulated: EmulatedSession | None = None
    turn: int = 0

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        now = datetime.now(UTC)
        server = self.play.server
        return Episode(
            id=f"teach_{uuid.uuid4().hex}",
            env_id=request.env_id,
            seed=request.seed,
            mcp_url=server.url or f"emulated:{server.name}",
            tools=list(server.tools),
            created_at=now,
            last_active_at=now,
        )

    @asynccontextmanager
    async def tool_session(self, episode: Episode) -> AsyncIterator[ToolSession]:
        server = self.play.server
        if server.url is None:
            self.emulated = EmulatedSession(
                synth=self.synth,
                server=server,
                options=self.options,
                seed=self.seed,
            )
            yield self.emulated
            return
        # A client of its own per trajectory: its cookies and session are this trajectory's.
        async with (
            httpx2.AsyncClient(headers=self.mcp_headers, timeout=MCP_TIMEOUT) as own,
            Client(streamable_http_client(server.url, http_client=own)) as client,
        ):
            yield McpToolSession(client)

    async def advance_turn(self, episode: Episode) -> int:
        self.turn += 1
        return self.turn

    async def score(self, episode: Episode, final_answer: str | None) -> RewardBreakdown | None:
        return None

    async def close_episode(self, episode: Episode) -> None:
        return None


PolicyFactory = Callable[[PolicyEndpoint, bool], PolicyClient]
"""A client of the teacher endpoint; the flag asks for token ids."""

KIND = "teacher"


class _Plan(BaseModel):
    """What every unit of a teacher run shares (the request without its tasks and servers)."""

    policy: PolicyEndpoint
    sampling: SamplingParams
    limits: EpisodeLimits
    emulator: EmulatorOptions
    emulator_url: str
    system_prompt: str | None
    token_ids: bool
    concurrency: int


class _Unit(BaseModel):
    """One task of a teacher run, with its server."""

    task: TeacherTask
    server: TeacherServer


class TeacherRunner:
    """Starts, reads and cancels teacher runs recorded in Redis; plays their tasks as units of
    the shared work queue and keeps their trajectories for ``run_retention_s``."""

    def __init__(
        self,
        *,
        store: RunStore,
        queue: WorkQueue,
        http: httpx.AsyncClient,
        policy_factory: PolicyFactory,
        emulator_url: str,
        emulator_token: str | None = None,
        mcp_headers: Callable[[str], dict[str, str]] = lambda url: {},
    ) -> None:
        self._store = store
        self._queue = queue
        self._http = http
        self._policy_factory = policy_factory
        self._emulator_url = emulator_url.rstrip("/")
        self._emulator_token = emulator_token
        self._mcp_headers = mcp_headers
        self._policies = RunPolicies()
        # ``concurrency`` of a run bounds its trajectories in flight on each replica.
        self._gates: dict[str, asyncio.Semaphore] = {}
        queue.register(KIND, self)

    async def start(self, request: TeacherRunRequest) -> TeacherRunStatus:
        """Record the run and queue its tasks; raises the policy factory's error when no
        endpoint is usable."""
        policy = self._policy_factory(request.policy, request.token_ids)
        await policy.aclose()
        servers = {s.name: s for s in request.servers}
        status = TeacherRunStatus(
            id=f"teach_{uuid.uuid4().hex[:16]}",
            label=request.label,
            model=policy.model,
            state=JobState.RUNNING,
            total=len(request.tasks),
            created_at=datetime.now(UTC),
        )
        plan = _Plan(
            policy=request.policy,
            sampling=request.sampling,
            limits=request.limits,
            emulator=request.emulator,
            emulator_url=(request.emulator.url or self._emulator_url).rstrip("/"),
            system_prompt=request.system_prompt,
            token_ids=request.token_ids,
            concurrency=request.concurrency,
        )
        fields = {"plan": plan.model_dump_json()}
        fields |= {
            f"task:{i}": _Unit(task=task, server=servers[task.server]).model_dump_json()
            for i, task in enumerate(request.tasks)
        }
        await self._store.create(KIND, status.id, status.model_dump_json(), status.total, fields)
        try:
            await self._queue.enqueue(KIND, status.id, status.total)
        except Exception as exc:
            await self._store.fail(status.id, f"queueing the tasks failed: {exc}")
            raise
        return await self.status(status.id)

    async def status(self, run_id: str) -> TeacherRunStatus:
        """Progress so far; ``KeyError`` when unknown."""
        meta = await self._store.meta(run_id)
        if meta is None or meta.get("kind") != KIND:
            raise KeyError(run_id)
        status = TeacherRunStatus.model_validate_json(meta["status"])
        failures = await self._store.failures(run_id)
        return status.model_copy(
            update={
                **lifecycle(meta),
                "done": counter(meta, "done"),
                "failed": counter(meta, "failed"),
                "tool_calls": counter(meta, "tool_calls"),
                "emulated_calls": counter(meta, "emulated_calls"),
                "injected_failures": counter(meta, "injected_failures"),
                "finish_reasons": {
                    name.removeprefix("finish:"): int(value)
                    for name, value in meta.items()
                    if name.startswith("finish:")
                },
                "recent_failures": [TaskFailure.model_validate_json(f) for f in failures],
            }
        )

    async def all(self) -> list[TeacherRunStatus]:
        """Every run within the retention, oldest first."""
        found = []
        for run_id in await self._store.run_ids(KIND):
            try:
                found.append(await self.status(run_id))
            except KeyError:  # expired meanwhile
                continue
        return found

    async def trajectories(self, run_id: str, offset: int, limit: int) -> TrajectoryPage:
        """Finished trajectories ``offset`` to ``offset + limit``; ``KeyError`` when unknown."""
        await self.status(run_id)
        total = await self._store.ordered_count(run_id)
        ids = await self._store.ordered(run_id, offset, offset + limit - 1)
        items = [t for t in await self._store.trajectories(run_id, ids) if t is not None]
        after = offset + len(ids)
        return TrajectoryPage(
            items=items, total=total, next_offset=after if after < total else None
        )

    async def wait(self, run_id: str) -> TeacherRunStatus:
        """Wait for the run to end."""
        await self._store.wait(run_id)
        return await self.status(run_id)

    async def cancel(self, run_id: str) -> TeacherRunStatus:
        """Stop it; finished trajectories stay readable."""
        await self.status(run_id)
        await self._store.cancel(run_id)
        await self._queue.cancel_local(run_id)
        return await self.status(run_id)

    async def aclose(self) -> None:
        """Close this replica's policy clients."""
        await self._policies.aclose()

    # -- units ------------------------------------------------------------------------------

    async def play_unit(self, unit: WorkUnit) -> None:
        """Play one task with the teacher and keep its trajectory."""
        plan, item = await self._unit_plan(unit)
        play = PlayTask(item.task, item.server)
        trajectory_id = unit_trajectory_id(unit.run_id, unit.index)
        seed = plan.emulator.seed + unit.index
        backend = ServerEpisodes(
            play=play,
            # Over the shared HTTP client, which stays open: nothing of this one to close.
            synth=SynthClient(
                plan.emulator_url,
                token=self._emulator_token,
                timeout_s=EMULATOR_TIMEOUT_S,
                http=self._http,
            ),
            mcp_headers=self._mcp_headers(item.server.url or ""),
            options=plan.emulator,
            seed=seed,
        )
        gate = self._gates.setdefault(unit.run_id, asyncio.Semaphore(plan.concurrency))
        try:
            policy = self._policies.acquire(
                unit.run_id, lambda: self._policy_factory(plan.policy, plan.token_ids)
            )
        except Exception as exc:  # this replica has no usable endpoint: a failed trajectory
            await self.fail_unit(unit, f"{type(exc).__name__}: {exc}")
            return
        try:
            async with gate:
                trajectory = await within_deadline(
                    run_episode(
                        play,
                        policy=policy,
                        episodes=backend,
                        sampling=plan.sampling,
                        limits=plan.limits,
                        system_prompt=plan.system_prompt,
                        seed=seed,
                        trajectory_id=trajectory_id,
                    ),
                    hard_deadline_s(plan.limits.timeout_s),
                    lambda reason: failed_trajectory(
                        play, reason, model=policy.model, trajectory_id=trajectory_id
                    ),
                )
        finally:
            await self._policies.release(unit.run_id)
        await self._record(unit, play, trajectory, backend.emulated)

    async def fail_unit(self, unit: WorkUnit, reason: str) -> None:
        """Keep a failed trajectory with ``reason`` for the task."""
        plan, item = await self._unit_plan(unit)
        play = PlayTask(item.task, item.server)
        trajectory = failed_trajectory(
            play,
            reason,
            model=plan.policy.model,
            trajectory_id=unit_trajectory_id(unit.run_id, unit.index),
        )
        await self._record(unit, play, trajectory, None)

    async def _unit_plan(self, unit: WorkUnit) -> tuple[_Plan, _Unit]:
        plan_json, unit_json = await self._store.plan(unit.run_id, "plan", f"task:{unit.index}")
        if plan_json is None or unit_json is None:
            raise KeyError(unit.run_id)
        return _Plan.model_validate_json(plan_json), _Unit.model_validate_json(unit_json)

    async def _record(
        self,
        unit: WorkUnit,
        play: PlayTask,
        trajectory: Trajectory,
        emulated: EmulatedSession | None,
    ) -> None:
        trajectory.metadata |= {
            "task_id": play.id,
            "server": play.server.name,
            "tools_emulated": emulated is not None,
            "emulated_calls": len(emulated.history) if emulated else 0,
            "injected_failures": emulated.injected if emulated else 0,
            "source": "teacher",
        }
        counters: list[tuple[str, int | float]] = [
            ("tool_calls", int(trajectory.metadata.get("tool_calls", 0))),
            ("emulated_calls", len(emulated.history) if emulated else 0),
            ("injected_failures", emulated.injected if emulated else 0),
            (f"finish:{trajectory.finish_reason.value}", 1),
        ]
        failure = ""
        if trajectory.failure_reason is not None:
            counters.append(("failed", 1))
            failure = TaskFailure(
                task_id=play.id, trajectory_id=trajectory.id, reason=trajectory.failure_reason
            ).model_dump_json()
        recorded = await self._store.record(
            unit.run_id,
            unit.index,
            UnitRecord(
                result=trajectory.id,
                counters=counters,
                order=trajectory.id,
                failure=failure,
                trajectory=trajectory,
            ),
        )
        if recorded and await self._store.state(unit.run_id) is not JobState.RUNNING:
            self._gates.pop(unit.run_id, None)
