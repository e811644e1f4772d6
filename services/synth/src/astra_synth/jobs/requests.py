"""What a client asks for when it starts an environment-synthesis job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import ScenarioType
from astra_synth.procedural.generate import DEFAULT_HOPS, scenario_types_for
from astra_synth.trajectories.models import DATASET_NAME_PATTERN, TOOLSET_ID_PATTERN
from astra_synth.trajectories.settings import TrajectorySettings

MAX_QA_BYTES = 5_000_000
"""Largest QA JSONL document a job accepts (bigger bodies are refused with 413)."""

MAX_KNOWLEDGE_TEXTS = 10_000
MAX_KNOWLEDGE_CHARS = 50_000
MAX_COUNT = 100_000
MAX_TEACHER_TASKS = 10_000

MAX_BFCL_ENTRIES = 1_000

Source = Literal["procedural", "qa", "knowledge", "bfcl"]


class BfclSelection(BaseModel):
    """Which BFCL v3 multi-turn entries a ``bfcl`` job imports (envhost holds the benchmark)."""

    model_config = ConfigDict(extra="forbid")

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


class EnvironmentJobRequest(BaseModel):
    """Start an environment-synthesis job.

    ``source`` defaults to what the inputs imply, and to ``procedural`` (no LLM) when there
    are none. ``qa`` needs ``qa_jsonl`` (one JSON object
    per line with ``question`` and ``answer``), ``knowledge`` needs ``knowledge`` texts; both
    need an LLM endpoint (here or configured). ``bfcl`` imports BFCL v3 multi-turn entries
    (``bfcl``: categories, limit per category, entry ids) as served by envhost; ``count`` and
    the procedural fields do not apply to it.
    """

    model_config = ConfigDict(extra="forbid")

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
    def _inputs_match_source(self) -> EnvironmentJobRequest:
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
        if self.resolved_source() == "procedural" and self.scenario_types:
            scenario_types_for(self.hops or DEFAULT_HOPS, self.scenario_types)
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


class DatasetJobRequest(BaseModel):
    """Build an SFT dataset from registered environments.

    ``source`` ``gold``: the reference solutions of procedural environments, played for real
    through envhost (no LLM). The environments are ``env_ids``, or those matching the
    registry filters (procedural ``train`` split by default), at most ``limit``.
    """

    model_config = ConfigDict(extra="forbid")

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


class TaskJobRequest(BaseModel):
    """Synthesize tasks for a registered toolset (docs/method.md A2-A3): tool-call graph, chains and
    their checks, chain-conditioned and server-only tasks, augmentation and grading, with the
    LLM endpoint given here or configured. The tasks are stored with the toolset."""

    model_config = ConfigDict(extra="forbid")

    toolset_id: str = Field(pattern=TOOLSET_ID_PATTERN)
    settings: TrajectorySettings = Field(default_factory=TrajectorySettings)
    llm_base_url: str | None = Field(default=None, max_length=2_000)
    llm_model: str | None = Field(default=None, max_length=256)


class TeacherEndpoint(BaseModel):
    """The teacher model: any OpenAI-compatible endpoint (its key is a rollout setting,
    ``ASTRA_ROLLOUT_TEACHER_API_KEY``, never part of a request)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", max_length=2_000)
    model: str = Field(min_length=1, max_length=256)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=32_768)
    token_ids: bool = Field(default=False, description="Ask for token ids (vLLM teachers).")


class TrajectoryJobRequest(BaseModel):
    """Build an SFT dataset from a toolset with a teacher model (docs/method.md A4-A5).

    Tasks are synthesized first (``tasks: synthesize``) or taken from the toolset's stored
    task batch (``tasks: stored``, written by a tasks job). The teacher plays each task
    through the rollout service against the real tools over MCP, and through the synth tool
    emulator for servers known only by their documents. Trajectories that end with a final
    answer go to the seven-part judge; those scoring at least ``judge_cutoff`` are exported.
    """

    model_config = ConfigDict(extra="forbid")

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
