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
import json
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import Episode, EpisodeRequest, JobState, RewardBreakdown, ToolSpec, Trajectory
from astra_rollout.agent import EpisodeLimits, failed_trajectory, run_episode
from astra_rollout.background import (
    Run,
    RunStatus,
    RunTable,
    hard_deadline_s,
    within_deadline,
)
from astra_rollout.batch_models import PolicyEndpoint
from astra_rollout.envhost_client import McpToolSession, ToolOutcome, ToolSession
from astra_rollout.policy import PolicyClient, SamplingParams

MAX_TASKS = 10_000
MAX_SERVERS = 1_000
EMULATOR_HISTORY = 5
RECENT_FAILURES = 20
MCP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherServer(_Strict):
    """A tool server of the tasks: real over MCP (``url``), or documents only (``tools``)."""

    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=20_000)
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2_000,
        description="Streamable-HTTP MCP endpoint; without it the tools are emulated.",
    )
    tools: list[ToolSpec] = Field(
        default_factory=list,
        max_length=1_000,
        description="The tool documents (required without url; with url the server lists them).",
    )


class TeacherTask(_Strict):
    """One task: the user's request, on one server."""

    id: str = Field(min_length=1, max_length=255)
    question: str = Field(min_length=1, max_length=100_000)
    server: str = Field(min_length=1, max_length=128)
    followup_turns: list[str] = Field(default_factory=list, max_length=64)


class EmulatorOptions(_Strict):
    """The LLM tool emulator for document-only servers."""

    url: str | None = Field(
        default=None, pattern=r"^https?://", description="synth base URL; default: settings."
    )
    failure_rate: float = Field(default=0.2, ge=0.0, le=1.0, description="Calls failed on purpose.")
    seed: int = Field(default=0, ge=0, description="Trajectory i's failures are drawn with seed+i.")
    llm_base_url: str | None = Field(
        default=None, max_length=2_000, description="The emulator's LLM; default: synth's."
    )
    llm_model: str | None = Field(default=None, max_length=256)


def teacher_limits() -> EpisodeLimits:
    """20 LLM calls and 240 s per trajectory."""
    return EpisodeLimits(max_turns=20, timeout_s=240.0)


class TeacherRunRequest(_Strict):
    """Play every task once with the teacher model."""

    tasks: list[TeacherTask] = Field(min_length=1, max_length=MAX_TASKS)
    servers: list[TeacherServer] = Field(min_length=1, max_length=MAX_SERVERS)
    policy: PolicyEndpoint = Field(
        default_factory=PolicyEndpoint,
        description="The teacher (any OpenAI-compatible endpoint; its key is a setting).",
    )
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(temperature=0.7))
    limits: EpisodeLimits = Field(default_factory=teacher_limits)
    emulator: EmulatorOptions = Field(default_factory=EmulatorOptions)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    token_ids: bool = Field(
        default=False, description="Ask for vLLM token ids and logprobs (vLLM teachers only)."
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="Trajectories in flight.")
    label: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("server names must be unique")
        empty = [s.name for s in self.servers if s.url is None and not s.tools]
        if empty:
            raise ValueError(f"servers without url need tool documents: {empty}")
        unknown = sorted({t.server for t in self.tasks} - set(names))
        if unknown:
            raise ValueError(f"tasks name unknown servers: {unknown}")
        ids = [t.id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ValueError("task ids must be unique")
        return self


class TaskFailure(_Strict):
    """A trajectory that ended in an error, and why."""

    task_id: str
    trajectory_id: str
    reason: str


class TeacherRunStatus(RunStatus):
    """Progress of a teacher run."""

    label: str | None = None
    model: str
    total: int
    done: int = 0
    failed: int = Field(default=0, description="Trajectories that ended in an error.")
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    tool_calls: int = 0
    emulated_calls: int = 0
    injected_failures: int = Field(default=0, description="Emulated calls failed on purpose.")
    recent_failures: list[TaskFailure] = Field(default_factory=list)


class TrajectoryPage(_Strict):
    """Finished trajectories of a run, in finishing order."""

    items: list[Trajectory]
    total: int = Field(description="Trajectories finished so far.")
    next_offset: int | None


class EmulatorError(Exception):
    """The emulator refused or failed a call; the trajectory cannot go on without a result."""


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
class EmulatedSession:
    """Tools of a document-only server, each call answered by synth's emulator."""

    http: httpx.AsyncClient
    url: str
    headers: dict[str, str]
    server: TeacherServer
    options: EmulatorOptions
    seed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    injected: int = 0

    async def list_tools(self) -> list[ToolSpec]:
        return list(self.server.tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        body = {
            "server": self.server.model_dump(mode="json", exclude={"url"}),
            "tool": name,
            "arguments": arguments,
            "history": self.history[-EMULATOR_HISTORY:],
            "index": len(self.history),
            "seed": self.seed,
            "failure_rate": self.options.failure_rate,
            "llm_base_url": self.options.llm_base_url,
            "llm_model": self.options.llm_model,
        }
        try:
            response = await self.http.post(
                f"{self.url}/v1/emulate", json=body, headers=self.headers
            )
        except httpx.TransportError as exc:
            raise EmulatorError(f"the emulator at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise EmulatorError(
                f"the emulator answered HTTP {response.status_code}: {response.text[:500]}"
            )
        reply = response.json()
        output, error = reply.get("output"), reply.get("error")
        self.injected += bool(reply.get("injected"))
        self.history.append(
            {"tool": name, "arguments": arguments, "output": output, "error": error}
        )
        if error is not None:
            return ToolOutcome(text=f"Error: {error}", is_error=True)
        return ToolOutcome(text=json.dumps(output, ensure_ascii=False), is_error=False)


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
