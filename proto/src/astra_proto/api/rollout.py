"""The rollout service's REST contracts: request and answer bodies of its routes.

- batches (``/v1/batches``): ``BatchRequest`` → ``BatchStatus``;
- evaluations (``/v1/evaluations``): ``EvaluationRequest`` → ``EvaluationStatus``;
- teacher runs (``/v1/teacher-runs``): ``TeacherRunRequest`` → ``TeacherRunStatus``, and the
  finished trajectories as ``TrajectoryPage``.

Every model forbids unknown fields (``ContractModel``), answers as well as requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from astra_proto.api.synth import EnvironmentQuery
from astra_proto.base import DB_INT_MAX, ContractModel, DbCount
from astra_proto.environment import EnvironmentId
from astra_proto.jobs import JobState
from astra_proto.tools import ToolSpec
from astra_proto.trajectory import Trajectory

MAX_ENV_IDS = 10_000
"""The most environment ids one batch may name."""
MAX_TASKS = 10_000
"""The most tasks one teacher run may carry."""
MAX_SERVERS = 1_000
"""The most tool servers one teacher run may carry."""


# --- what every kind of run shares ------------------------------------------------------------


class PolicyEndpoint(ContractModel):
    """Which policy plays; unset fields take the service's settings."""

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (.../v1); default: settings."
    )
    model: str | None = Field(default=None, description="Model name; default: settings.")


class SamplingParams(ContractModel):
    """Sampling parameters sent with every chat-completion request of an episode."""

    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=131_072, description="Per completion.")
    stop: list[str] | None = Field(default=None, max_length=8)
    seed: int | None = Field(default=None, description="Sampling seed, where the server has one.")


class EpisodeLimits(ContractModel):
    """When an episode stops if the policy has not given its final answer."""

    max_turns: int = Field(default=32, ge=1, le=1024, description="Policy calls per episode.")
    token_budget: int = Field(
        default=16_384, ge=1, description="Tokens of the conversation (last prompt + completion)."
    )
    timeout_s: float = Field(default=600.0, gt=0, le=86_400, description="Wall clock, unscored.")


class RunStatus(ContractModel):
    """The fields every run's status has."""

    id: str
    state: JobState
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


# --- batches ------------------------------------------------------------------------------------


class RegistryQuery(EnvironmentQuery):
    """Filters of synth's ``GET /v1/environments`` (every given one must match) and how many
    environments to take."""

    limit: int = Field(default=100, ge=1, le=100_000, description="Environments to take.")
    offset: DbCount = 0


class DistractorOptions(ContractModel):
    """Irrelevant-tool mixing: up to ``per_band`` distractors from each similarity band."""

    enabled: bool = False
    per_band: int = Field(default=2, ge=0, le=16)
    seed: int = Field(default=0, description="Seed of the draw within each band.")


class BatchRequest(ContractModel):
    """Group rollouts: ``group_size`` episodes of each environment, given by id or by query."""

    env_ids: list[EnvironmentId] | None = Field(default=None, min_length=1, max_length=MAX_ENV_IDS)
    query: RegistryQuery | None = Field(
        default=None, description="Registry filters (the synth API's GET /v1/environments)."
    )
    group_size: int = Field(default=8, ge=1, le=1024, description="G: rollouts per environment.")
    policy: PolicyEndpoint = Field(default_factory=PolicyEndpoint)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    limits: EpisodeLimits | None = Field(default=None, description="Default: settings.")
    distractors: DistractorOptions = Field(default_factory=DistractorOptions)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    # seed + i is stored with each episode: it stays a database integer for any group size.
    seed: int = Field(
        default=0, ge=0, le=DB_INT_MAX - 1024, description="Episode i of a group gets seed + i."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.env_ids is None) == (self.query is None):
            raise ValueError("give exactly one of env_ids and query")
        if self.env_ids is not None and len(set(self.env_ids)) != len(self.env_ids):
            raise ValueError("env_ids must not repeat an id (use group_size for repeats)")
        return self


class BatchSummary(ContractModel):
    """Aggregates over the batch's finished (not failed) episodes.

    ``success_rate`` counts episodes whose reward F1 is 1 (every sub-question solved with no
    wasted call, or a BFCL pass); ``groups_with_variance`` counts groups (all episodes done)
    whose rewards are not all equal: the ones GRPO can learn from.
    """

    scored: int = 0
    mean_reward: float | None = None
    success_rate: float | None = None
    mean_turns: float | None = None
    mean_tool_calls: float | None = None
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    groups_done: int = 0
    groups_with_variance: int = 0


class EpisodeFailure(ContractModel):
    """One failed episode of a batch."""

    trajectory_id: str
    env_id: str
    reason: str


class BatchStatus(ContractModel):
    """Progress and outcome of a batch (``published`` counts trajectories on the stream)."""

    id: str
    state: JobState
    environments: int
    group_size: int
    total: int = Field(description="Episodes in the batch.")
    done: int = Field(default=0, description="Episodes finished, failed ones included.")
    failed: int = 0
    cancelled: int = 0
    published: int = 0
    publish_errors: int = 0
    summary: BatchSummary = Field(default_factory=BatchSummary)
    recent_failures: list[EpisodeFailure] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


# --- evaluations --------------------------------------------------------------------------------

Suite = Literal["heldout-procedural", "bfcl-multi-turn"]

SUITES: dict[str, tuple[str, tuple[str, ...]]] = {
    "heldout-procedural": ("procedural", ("heldout_entities", "heldout_compositions")),
    "bfcl-multi-turn": ("bfcl", ("base", "miss_func", "miss_param", "long_context")),
}
"""Each suite's registry source and its categories."""


def evaluation_sampling() -> SamplingParams:
    """Greedy, at most 512 tokens per completion."""
    return SamplingParams(temperature=0.0, max_tokens=512)


class EvaluationRequest(ContractModel):
    """Evaluate a policy on a suite: ``limit`` entries per category (the first ones in the
    registry, so two runs see the same entries), greedy sampling unless told otherwise."""

    suite: Suite
    categories: list[str] | None = Field(default=None, min_length=1)
    limit: int = Field(default=50, ge=1, le=10_000, description="Entries per category.")
    policy: PolicyEndpoint = Field(default_factory=PolicyEndpoint)
    sampling: SamplingParams = Field(default_factory=evaluation_sampling)
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


class EntryScore(ContractModel):
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


class CategoryScore(ContractModel):
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


# --- teacher runs -------------------------------------------------------------------------------


class TeacherServer(ContractModel):
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


class TeacherTask(ContractModel):
    """One task: the user's request, on one server."""

    id: str = Field(min_length=1, max_length=255)
    question: str = Field(min_length=1, max_length=100_000)
    server: str = Field(min_length=1, max_length=128)
    followup_turns: list[str] = Field(default_factory=list, max_length=64)


class EmulatorOptions(ContractModel):
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


def teacher_sampling() -> SamplingParams:
    """Temperature 0.7."""
    return SamplingParams(temperature=0.7)


def teacher_limits() -> EpisodeLimits:
    """20 LLM calls and 240 s per trajectory."""
    return EpisodeLimits(max_turns=20, timeout_s=240.0)


class TeacherRunRequest(ContractModel):
    """Play every task once with the teacher model."""

    tasks: list[TeacherTask] = Field(min_length=1, max_length=MAX_TASKS)
    servers: list[TeacherServer] = Field(min_length=1, max_length=MAX_SERVERS)
    policy: PolicyEndpoint = Field(
        default_factory=PolicyEndpoint,
        description="The teacher (any OpenAI-compatible endpoint; its key is a setting).",
    )
    sampling: SamplingParams = Field(default_factory=teacher_sampling)
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


class TaskFailure(ContractModel):
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


class TrajectoryPage(ContractModel):
    """Finished trajectories of a run, in finishing order."""

    items: list[Trajectory]
    total: int = Field(description="Trajectories finished so far.")
    next_offset: int | None


CONTRACTS: dict[str, type[BaseModel]] = {
    "BatchRequest": BatchRequest,
    "BatchStatus": BatchStatus,
    "EvaluationRequest": EvaluationRequest,
    "EvaluationStatus": EvaluationStatus,
    "TeacherRunRequest": TeacherRunRequest,
    "TeacherRunStatus": TeacherRunStatus,
    "TrajectoryPage": TrajectoryPage,
}
"""Every contract of this module whose JSON Schema is published, by model name."""
