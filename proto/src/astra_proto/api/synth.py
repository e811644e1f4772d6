"""The synth service's REST contracts: request and answer bodies of its routes.

- jobs (``/v1/jobs``): ``EnvironmentJobRequest``, ``DatasetJobRequest``, ``TaskJobRequest``,
  ``TrajectoryJobRequest`` → ``SynthesisJob``; ``JobPage``, ``JobStats`` and
  ``JobRejectionPage`` (``astra_proto.jobs``) to read them;
- the environment registry (``/v1/environments``): ``EnvironmentSpec`` → ``Registered``;
  ``EnvironmentQuery`` → ``EnvironmentPage``; ``VerificationReport``;
- datasets (``/v1/datasets``): ``DatasetUpload`` → ``DatasetManifest``;
- toolsets (``/v1/toolsets``): ``ToolsetRequest`` → ``Toolset``; ``ToolGraph``;
- the tool emulator (``/v1/emulate``): ``EmulateRequest`` → ``EmulateReply``;
- ``/v1/workers``: ``WorkerList``; the web console's reads (``/v1/episodes``,
  ``/v1/trajectories``, ``/v1/training/...``): ``EpisodePage``, ``TrajectoryPage``,
  ``TrainingRuns``, ``TrainingMetrics``.

Requests forbid unknown fields; most answers ignore them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from astra_proto.base import ContractModel, DbCount
from astra_proto.environment import EnvironmentSpec, ScenarioType
from astra_proto.episode import EpisodeState
from astra_proto.jobs import JobState, StageProgress, SynthesisJob
from astra_proto.tools import ToolSpec
from astra_proto.trajectory import Trajectory

TOOLSET_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
"""A toolset id: one file name (letters, digits, '_', '.', '-') that does not start with a dot."""

DATASET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
"""A dataset name, by the same rule."""

MAX_QA_BYTES = 5_000_000
"""Largest QA JSONL document a job accepts (bigger bodies are refused with 413)."""

MAX_KNOWLEDGE_TEXTS = 10_000
MAX_KNOWLEDGE_CHARS = 50_000
MAX_COUNT = 100_000
MAX_TEACHER_TASKS = 10_000
MAX_BFCL_ENTRIES = 1_000
MAX_TOOLSET_SOURCES = 200
"""The most servers of each kind one toolset request may name."""

Source = Literal["procedural", "qa", "knowledge", "bfcl"]
"""Where an environment job's candidate environments come from."""


# --- trajectory-synthesis settings (a tasks job's and a toolset's) ----------------------------

AugmentKind = Literal["diverse", "complex", "persona"]
ALL_AUGMENTATIONS: list[AugmentKind] = ["diverse", "complex", "persona"]


class TrajectorySettings(ContractModel):
    """How toolsets are filtered, chains sampled and checked, tasks written and kept."""

    min_tools_per_server: int = Field(default=3, ge=1)
    """Servers with fewer usable tools are dropped."""
    min_description_words: int = Field(default=3, ge=1)
    """Tool descriptions with fewer words are 'vague' and the tool is dropped."""
    proposals_per_server: int = Field(default=4, ge=0)
    """(task, chain) pairs asked of the LLM per server, to weight the tool-call graph."""
    walks_per_server: int = Field(default=8, ge=0)
    """Candidate chains sampled per server."""
    min_chain_length: int = Field(default=2, ge=1)
    max_chain_length: int = Field(default=5, ge=1)
    acyclic: bool = True
    """Walks never revisit a tool."""
    coherence_votes: int = Field(default=3, ge=1)
    """LLM samples voting whether a chain makes sense; a strict majority must say yes."""
    server_tasks_per_server: int = Field(default=2, ge=0)
    """Tasks written from the server description alone."""
    augmentations: list[AugmentKind] = Field(default_factory=lambda: list(ALL_AUGMENTATIONS))
    min_question_quality: int = Field(default=4, ge=1, le=5)
    min_realism: int = Field(default=4, ge=1, le=5)
    min_tool_necessity: int = Field(default=4, ge=1, le=5)
    """Task thresholds (scores 1-5 from the LLM): a task below any one is dropped."""
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    judge_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=16)
    seed: int = 0
    """Seeds the walks (and the emulator's failures)."""

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.min_chain_length > self.max_chain_length:
            raise ValueError("min_chain_length must not exceed max_chain_length")
        return self


# --- jobs -------------------------------------------------------------------------------------


class BfclSelection(ContractModel):
    """Which BFCL v3 multi-turn entries a ``bfcl`` job imports (envhost holds the benchmark)."""

    categories: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="base, miss_func, miss_param, long_context (default: all four).",
    )
    limit: int | None = Field(default=None, ge=0, description="At most this many per category.")
    entries: list[str] | None = Field(
        default=None, min_length=1, max_length=MAX_BFCL_ENTRIES, description="Only these ids."
    )


class EnvironmentJobRequest(ContractModel):
    """Start an environment-synthesis job.

    ``source`` defaults to what the inputs imply, and to ``procedural`` (no LLM) when there
    are none. ``qa`` needs ``qa_jsonl`` (one JSON object
    per line with ``question`` and ``answer``), ``knowledge`` needs ``knowledge`` texts; both
    need an LLM endpoint (here or configured). ``bfcl`` imports BFCL v3 multi-turn entries
    (``bfcl``: categories, limit per category, entry ids) as served by envhost; ``count`` and
    the procedural fields do not apply to it. The service also refuses procedural
    ``scenario_types`` that none of the ``hops`` suits (422, naming the types that would).
    """

    source: Source | None = None
    count: int = Field(default=20, ge=1, le=MAX_COUNT, description="Environments to produce.")
    seed: int = Field(default=0, ge=0)
    domains: list[str] | None = Field(default=None, min_length=1, max_length=64)
    hops: list[int] | None = Field(
        default=None, min_length=1, max_length=64, description="Hop counts to draw from."
    )
    scenario_types: list[ScenarioType] | None = Field(default=None, min_length=1)
    split: str = Field(default="train", max_length=64)
    qa_jsonl: str | None = Field(default=None, description="QA pairs, one JSON object per line.")
    knowledge: list[str] | None = Field(default=None, min_length=1, max_length=MAX_KNOWLEDGE_TEXTS)
    llm_base_url: str | None = Field(default=None, max_length=2_000)
    llm_model: str | None = Field(default=None, max_length=256)
    pipeline: dict[str, Any] = Field(
        default_factory=dict, description="LLM pipeline settings (thresholds, retries, hop budget)."
    )
    bfcl: BfclSelection | None = Field(default=None, description="The entries of source bfcl.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Items verified at once.")

    @model_validator(mode="after")
    def _inputs_match_source(self) -> Self:
        if any(hop < 1 or hop > 20 for hop in self.hops or []):
            raise ValueError("hops must lie between 1 and 20")
        if self.source == "qa" and not self.qa_jsonl:
            raise ValueError("source 'qa' needs qa_jsonl (one JSON object per line)")
        if self.source == "knowledge" and not self.knowledge:
            raise ValueError("source 'knowledge' needs knowledge texts")
        if self.source in ("procedural", "bfcl") and (self.qa_jsonl or self.knowledge):
            raise ValueError(f"source {self.source!r} takes no qa_jsonl or knowledge")
        if self.bfcl is not None and self.resolved_source() != "bfcl":
            raise ValueError(f"source {self.resolved_source()!r} takes no bfcl selection")
        if any(len(text) > MAX_KNOWLEDGE_CHARS for text in self.knowledge or []):
            raise ValueError(f"each knowledge text holds at most {MAX_KNOWLEDGE_CHARS} characters")
        return self

    def resolved_source(self) -> Source:
        """The source to run: the one given, else what the inputs imply (QA pairs, knowledge
        texts, a BFCL selection), else procedural."""
        if self.source is not None:
            return self.source
        if self.qa_jsonl:
            return "qa"
        if self.knowledge:
            return "knowledge"
        if self.bfcl is not None:
            return "bfcl"
        return "procedural"

    def qa_size(self) -> int:
        """Bytes of the QA document."""
        return len(self.qa_jsonl.encode()) if self.qa_jsonl else 0


class DatasetJobRequest(ContractModel):
    """Build an SFT dataset from registered environments.

    ``source`` ``gold``: the reference solutions of procedural environments, played for real
    through envhost (no LLM). The environments are ``env_ids``, or those matching the
    registry filters (procedural ``train`` split by default), at most ``limit``.
    """

    source: Literal["gold"] = "gold"
    name: str | None = Field(
        default=None, pattern=DATASET_NAME_PATTERN, description="Default: the job id."
    )
    env_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_COUNT)
    env_source: str = Field(default="procedural", max_length=64)
    split: str | None = Field(default="train", max_length=64)
    domain: str | None = Field(default=None, max_length=128)
    job_id: str | None = Field(default=None, max_length=255, description="Environments of a job.")
    limit: int = Field(default=1_000, ge=1, le=MAX_COUNT)
    concurrency: int = Field(default=4, ge=1, le=64)


class TaskJobRequest(ContractModel):
    """Synthesize tasks for a registered toolset (docs/method.md A2-A3): tool-call graph, chains and
    their checks, chain-conditioned and server-only tasks, augmentation and grading, with the
    LLM endpoint given here or configured. The tasks are stored with the toolset."""

    toolset_id: str = Field(pattern=TOOLSET_ID_PATTERN)
    settings: TrajectorySettings = Field(default_factory=TrajectorySettings)
    llm_base_url: str | None = Field(default=None, max_length=2_000)
    llm_model: str | None = Field(default=None, max_length=256)


class TeacherEndpoint(ContractModel):
    """The teacher model: any OpenAI-compatible endpoint (its key is a rollout setting,
    ``ASTRA_ROLLOUT_TEACHER_API_KEY``, never part of a request)."""

    base_url: str = Field(pattern=r"^https?://", max_length=2_000)
    model: str = Field(min_length=1, max_length=256)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=32_768)
    token_ids: bool = Field(default=False, description="Ask for token ids (vLLM teachers).")


class TrajectoryJobRequest(ContractModel):
    """Build an SFT dataset from a toolset with a teacher model (docs/method.md A4-A5).

    Tasks are synthesized first (``tasks: synthesize``) or taken from the toolset's stored
    task batch (``tasks: stored``, written by a tasks job). The teacher plays each task
    through the rollout service against the real tools over MCP, and through the synth tool
    emulator for servers known only by their documents. Trajectories that end with a final
    answer go to the seven-part judge; those scoring at least ``judge_cutoff`` are exported.
    """

    toolset_id: str = Field(pattern=TOOLSET_ID_PATTERN)
    teacher: TeacherEndpoint
    tasks: Literal["synthesize", "stored"] = "synthesize"
    task_settings: TrajectorySettings = Field(default_factory=TrajectorySettings)
    max_tasks: int = Field(default=1_000, ge=1, le=MAX_TEACHER_TASKS)
    name: str | None = Field(
        default=None, pattern=DATASET_NAME_PATTERN, description="Default: the job id."
    )
    llm_base_url: str | None = Field(
        default=None, max_length=2_000, description="LLM of tasks, emulator and judge."
    )
    llm_model: str | None = Field(default=None, max_length=256)
    emulator_failure_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    max_llm_calls: int = Field(default=20, ge=1, le=1024, description="Teacher calls per task.")
    time_limit_s: float = Field(default=240.0, gt=0, le=86_400, description="Per trajectory.")
    token_budget: int = Field(default=16_384, ge=1)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    judge_cutoff: float = Field(default=0.75, ge=0.0, le=1.0)
    concurrency: int = Field(default=8, ge=1, le=256, description="Trajectories in flight.")
    seed: int = Field(default=0, ge=0, description="Seeds the emulator's injected failures.")


JobRequest = EnvironmentJobRequest | DatasetJobRequest | TaskJobRequest | TrajectoryJobRequest
"""Any request that starts a job."""


class JobPage(ContractModel):
    """A page of jobs, newest first."""

    items: list[SynthesisJob]


class JobStats(ContractModel):
    """A job's yield: what it registered (hops, scenario types, tools per environment,
    domains, splits) and what it rejected, by reason."""

    job_id: str
    state: JobState
    progress: list[StageProgress]
    stats: dict[str, Any]


class WorkerList(ContractModel):
    """The Celery workers that answered a ping."""

    count: int
    workers: list[str]


# --- the environment registry -----------------------------------------------------------------


class EnvironmentQuery(ContractModel):
    """Filters of ``GET /v1/environments``: every given one must match."""

    kind: str | None = None
    source: str | None = None
    domain: str | None = None
    scenario_type: ScenarioType | None = None
    split: str | None = None
    job_id: str | None = None
    min_hops: DbCount | None = None
    max_hops: DbCount | None = None


class EnvironmentSummary(ContractModel):
    """One environment in a listing."""

    id: str
    kind: str
    source: str | None
    domain: str
    scenario_type: ScenarioType | None
    split: str
    hops: int
    tools: int
    task: str

    @classmethod
    def of(cls, spec: EnvironmentSpec) -> Self:
        """The summary of ``spec`` (its task cut to 200 characters)."""
        return cls(
            id=spec.id,
            kind=spec.kind,
            source=spec.provenance.source if spec.provenance else None,
            domain=spec.domain,
            scenario_type=spec.scenario_type,
            split=spec.split,
            hops=spec.hops,
            tools=len(spec.tool_names()),
            task=spec.task[:200],
        )


class EnvironmentPage(ContractModel):
    """A page of environments and how many match in all."""

    total: int
    items: list[EnvironmentSummary]


class VerificationReport(ContractModel):
    """A certificate re-checked from the spec alone: every reference call replayed."""

    env_id: str
    holds: bool
    replays: int
    problems: list[str]


class Registered(ContractModel):
    """The outcome of registering a spec."""

    id: str
    created: bool


# --- datasets ---------------------------------------------------------------------------------


class DatasetUpload(ContractModel):
    """Trajectory records to export as they are into the dataset ``name``."""

    name: str = Field(pattern=DATASET_NAME_PATTERN, description="The dataset's name.")
    records: list[Trajectory] = Field(min_length=1)


class DatasetStats(ContractModel):
    """Figures a dataset card reports."""

    records: int = Field(ge=0)
    tool_calls_mean: float = 0.0
    tool_calls_max: int = 0
    parallel_call_messages: int = Field(
        default=0, description="Assistant messages issuing more than one call."
    )
    messages_mean: float = 0.0
    tools_offered_mean: float = 0.0
    by_domain: dict[str, int] = Field(default_factory=dict)
    by_source: dict[str, int] = Field(default_factory=dict)
    score_mean: float | None = None


class DatasetManifest(ContractModel):
    """An exported SFT dataset: where its files are and what it holds."""

    name: str
    path: str = Field(description="The dataset folder (absolute).")
    files: dict[str, str] = Field(description="Relative file path -> SHA-256.")
    stats: DatasetStats
    rejected: dict[str, int] = Field(
        default_factory=dict, description="Samples dropped before export, by reason."
    )
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


# --- toolsets ---------------------------------------------------------------------------------


class McpSource(ContractModel):
    """An MCP server (streamable HTTP) whose listed tools form one group."""

    url: str = Field(pattern=r"^https?://", max_length=2_000)
    name: str | None = Field(default=None, max_length=64)
    token: str | None = Field(default=None, max_length=4_000, description="Bearer token.")


class OpenApiSource(ContractModel):
    """An OpenAPI 3 document; each operation becomes a tool."""

    document: dict[str, Any]
    name: str | None = Field(default=None, max_length=64)


class JsonToolsSource(ContractModel):
    """A JSON tool list (OpenAI function specs, flat entries or MCP ``inputSchema`` entries)."""

    name: str = Field(min_length=1, max_length=64)
    tools: list[Any] = Field(max_length=10_000)
    description: str = Field(default="", max_length=10_000)


class ToolsetRequest(ContractModel):
    """Register a toolset: one server per source; the filters (at least N tools, usable
    descriptions, convertible schemas) drop what cannot be used, with reasons."""

    id: str | None = Field(default=None, pattern=TOOLSET_ID_PATTERN)
    mcp: list[McpSource] = Field(default_factory=list, max_length=MAX_TOOLSET_SOURCES)
    openapi: list[OpenApiSource] = Field(default_factory=list, max_length=MAX_TOOLSET_SOURCES)
    json_tools: list[JsonToolsSource] = Field(default_factory=list, max_length=MAX_TOOLSET_SOURCES)
    settings: TrajectorySettings = Field(default_factory=TrajectorySettings)


class Rejection(ContractModel):
    """Something a filter dropped, and why."""

    subject: str = Field(description="'server:<name>' or 'tool:<server>/<name>'.")
    reason: str = Field(description="Short machine-readable reason, e.g. 'vague_description'.")
    detail: str = ""


class ToolServer(ContractModel):
    """One group of tools: the tools of one MCP server (or one OpenAPI / JSON document)."""

    name: str = Field(min_length=1)
    description: str = ""
    source: Literal["mcp", "openapi", "json"]
    url: str | None = Field(default=None, description="MCP URL, when the tools can run for real.")
    tools: list[ToolSpec] = Field(default_factory=list)

    def tool(self, name: str) -> ToolSpec:
        """The tool called ``name``; ``KeyError`` when the server has none."""
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(f"server {self.name!r} has no tool {name!r}")


class Toolset(ContractModel):
    """Servers kept by ingestion, and everything the filters dropped (with reasons)."""

    id: str = Field(pattern=TOOLSET_ID_PATTERN)
    servers: list[ToolServer] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    created_at: datetime

    def server(self, name: str) -> ToolServer:
        """The server called ``name``; ``KeyError`` when absent."""
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(f"toolset {self.id!r} has no server {name!r}")


class Edge(ContractModel):
    """A directed edge of the tool-call graph: ``target`` was seen called after ``source``."""

    source: str
    target: str
    weight: int = Field(ge=1, description="Observed transitions (LLM chains + schema links).")
    from_llm: int = Field(default=0, ge=0, description="Transitions in LLM-proposed chains.")
    from_schema: int = Field(default=0, ge=0, description="1 when an output can feed an input.")


class ToolGraph(ContractModel):
    """The tool-call graph of one server (chains never cross servers)."""

    server: str
    nodes: list[str]
    edges: list[Edge] = Field(default_factory=list)

    def successors(self, node: str) -> list[Edge]:
        """Edges leaving ``node``, in a stable order."""
        return [e for e in self.edges if e.source == node]


# --- the tool emulator ------------------------------------------------------------------------


class EmulatedServer(ContractModel):
    """The server's documents."""

    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=20_000)
    tools: list[ToolSpec] = Field(min_length=1, max_length=1_000)


class PastCall(ContractModel):
    """One earlier call of the trajectory and what it returned."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    error: str | None = None


class EmulateRequest(ContractModel):
    """One call to emulate, with the trajectory's recent calls (the last five are shown to the
    LLM) and its position ``index`` among all the trajectory's calls."""

    server: EmulatedServer
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    history: list[PastCall] = Field(default_factory=list, max_length=50)
    index: int = Field(default=0, ge=0)
    seed: int = 0
    failure_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    llm_base_url: str | None = Field(default=None, max_length=2_000)
    llm_model: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _position(self) -> Self:
        if self.index < len(self.history):
            raise ValueError("index counts every earlier call, so it is at least len(history)")
        return self


class EmulateReply(ContractModel):
    """The call's output, or its error (``injected``: failed on purpose)."""

    output: Any = None
    error: str | None = None
    injected: bool = False


# --- the web console's reads ------------------------------------------------------------------


class EpisodeSummary(ContractModel):
    """One episode in a listing: who, when, how many calls, and its F1 once scored."""

    id: str
    env_id: str
    state: EpisodeState
    seed: int
    turn: int
    calls: int
    f1: float | None
    created_at: datetime
    last_active_at: datetime


class EpisodePage(ContractModel):
    """A page of episodes, newest first, and how many match in all."""

    total: int
    items: list[EpisodeSummary]


class TrajectorySummary(ContractModel):
    """One archived trajectory in a listing (its messages are in the full record)."""

    id: str
    env_id: str
    episode_id: str | None
    group_id: str | None
    policy_version: int
    f1: float | None
    finish_reason: str
    created_at: datetime


class TrajectoryPage(ContractModel):
    """A page of trajectories, newest first, and how many match in all."""

    total: int
    items: list[TrajectorySummary]


class TrainingRuns(ContractModel):
    """The trainer's runs, as it lists them."""

    trainer_url: str
    runs: list[dict[str, Any]]


class TrainingMetrics(ContractModel):
    """One run's metrics: one object per optimizer step (its scalar fields), in step order."""

    trainer_url: str
    run_id: str
    steps: list[dict[str, Any]]


CONTRACTS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        EnvironmentJobRequest,
        DatasetJobRequest,
        TaskJobRequest,
        TrajectoryJobRequest,
        JobPage,
        JobStats,
        WorkerList,
        EnvironmentQuery,
        EnvironmentPage,
        VerificationReport,
        Registered,
        DatasetUpload,
        DatasetManifest,
        ToolsetRequest,
        Toolset,
        ToolGraph,
        EmulateRequest,
        EmulateReply,
        EpisodePage,
        TrajectoryPage,
        TrainingRuns,
        TrainingMetrics,
    )
}
"""Every contract of this module whose JSON Schema is published, by model name."""
