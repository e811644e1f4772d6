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
grades them) and are not published to the training stream: they stay with the run and are read
page by page over REST.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from astra_proto import Episode, EpisodeRequest, JobState, RewardBreakdown, ToolSpec
from astra_rollout.agent import failed_trajectory, run_episode
from astra_rollout.background import (
    Run,
    RunTable,
    hard_deadline_s,
    within_deadline,
)
from astra_rollout.envhost_client import McpToolSession, ToolSession
from astra_rollout.policy import PolicyClient
from astra_rollout.teacher_emulator import EmulatedSession
from astra_rollout.teacher_models import (
    EmulatorOptions,
    TaskFailure,
    TeacherRunRequest,
    TeacherRunStatus,
    TeacherServer,
    TeacherTask,
    TrajectoryPage,
)

RECENT_FAILURES = 20
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
    http: httpx.AsyncClient
    emulator_url: str
    emulator_headers: dict[str, str]
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
                http=self.http,
                url=self.emulator_url,
                headers=self.emulator_headers,
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


PolicyFactory = Callable[[TeacherRunRequest], PolicyClient]


class TeacherRunner:
    """Runs teacher runs in this process and keeps their trajectories."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        policy_factory: PolicyFactory,
        emulator_url: str,
        emulator_token: str | None = None,
        mcp_headers: Callable[[str], dict[str, str]] = lambda url: {},
        keep: int = 20,
    ) -> None:
        self._http = http
        self._policy_factory = policy_factory
        self._emulator_url = emulator_url.rstrip("/")
        self._emulator_headers = (
            {"Authorization": f"Bearer {emulator_token}"} if emulator_token else {}
        )
        self._mcp_headers = mcp_headers
        self._runs = RunTable[TeacherRunStatus](keep)

    async def start(self, request: TeacherRunRequest) -> TeacherRunStatus:
        """Start the run; raises the policy factory's error when no endpoint is usable."""
        policy = self._policy_factory(request)
        servers = {s.name: s for s in request.servers}
        plays = [PlayTask(task, servers[task.server]) for task in request.tasks]
        status = TeacherRunStatus(
            id=f"teach_{uuid.uuid4().hex[:16]}",
            label=request.label,
            model=policy.model,
            state=JobState.RUNNING,
            total=len(plays),
            created_at=datetime.now(UTC),
        )
        emulator_url = (request.emulator.url or self._emulator_url).rstrip("/")
        slots = asyncio.Semaphore(request.concurrency)
        reasons: Counter[str] = Counter()
        failures: deque[TaskFailure] = deque(maxlen=RECENT_FAILURES)

        async def work(run: Run[TeacherRunStatus]) -> None:
            async def play(index: int, task: PlayTask) -> None:
                backend = ServerEpisodes(
                    play=task,
                    http=self._http,
                    emulator_url=emulator_url,
                    emulator_headers=self._emulator_headers,
                    mcp_headers=self._mcp_headers(task.server.url or ""),
                    options=request.emulator,
                    seed=request.emulator.seed + index,
                )
                async with slots:
                    trajectory = await within_deadline(
                        run_episode(
                            task,
                            policy=policy,
                            episodes=backend,
                            sampling=request.sampling,
                            limits=request.limits,
                            system_prompt=request.system_prompt,
                            seed=request.emulator.seed + index,
                        ),
                        hard_deadline_s(request.limits.timeout_s),
                        lambda reason: failed_trajectory(task, reason, model=policy.model),
                    )
                emulated = backend.emulated
                trajectory.metadata |= {
                    "task_id": task.id,
                    "server": task.server.name,
                    "tools_emulated": emulated is not None,
                    "emulated_calls": len(emulated.history) if emulated else 0,
                    "injected_failures": emulated.injected if emulated else 0,
                    "source": "teacher",
                }
                run.trajectories[trajectory.id] = trajectory
                status = run.status
                status.done += 1
                status.tool_calls += int(trajectory.metadata.get("tool_calls", 0))
                status.emulated_calls += len(emulated.history) if emulated else 0
                status.injected_failures += emulated.injected if emulated else 0
                reasons[trajectory.finish_reason.value] += 1
                status.finish_reasons = dict(reasons)
                if trajectory.failure_reason is not None:
                    status.failed += 1
                    failures.append(
                        TaskFailure(
                            task_id=task.id,
                            trajectory_id=trajectory.id,
                            reason=trajectory.failure_reason,
                        )
                    )
                    status.recent_failures = list(failures)

            try:
                await asyncio.gather(*(play(i, task) for i, task in enumerate(plays)))
            finally:
                await policy.aclose()

        self._runs.start(status, work)
        return self.status(status.id)

    def status(self, run_id: str) -> TeacherRunStatus:
        """Progress so far; ``KeyError`` when unknown."""
        return self._runs.status(run_id)

    def all(self) -> list[TeacherRunStatus]:
        """Every run kept, oldest first."""
        return [run.status.model_copy(deep=True) for run in self._runs.runs()]

    def trajectories(self, run_id: str, offset: int, limit: int) -> TrajectoryPage:
        """Finished trajectories ``offset`` to ``offset + limit``; ``KeyError`` when unknown."""
        kept = list(self._runs.get(run_id).trajectories.values())
        items = kept[offset : offset + limit]
        after = offset + len(items)
        return TrajectoryPage(
            items=items, total=len(kept), next_offset=after if after < len(kept) else None
        )

    async def wait(self, run_id: str) -> TeacherRunStatus:
        """Wait for the run to end."""
        return await self._runs.wait(run_id)

    async def cancel(self, run_id: str) -> TeacherRunStatus:
        """Stop it; finished trajectories stay readable."""
        return await self._runs.cancel(run_id)

    async def aclose(self) -> None:
        """Cancel every running run."""
        await self._runs.aclose()
