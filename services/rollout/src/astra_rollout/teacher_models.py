"""Teacher runs over REST: the request, its tasks and servers, status and trajectory pages."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import ToolSpec, Trajectory
from astra_rollout.agent import EpisodeLimits
from astra_rollout.background import RunStatus
from astra_rollout.batch_models import PolicyEndpoint
from astra_rollout.policy import SamplingParams

MAX_TASKS = 10_000
MAX_SERVERS = 1_000


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
