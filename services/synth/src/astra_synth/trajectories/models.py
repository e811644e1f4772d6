"""Records of trajectory synthesis: toolsets, chains, tasks, judged samples, dataset manifests.

These stay inside the synth service (they are stored as files under its data directory and
returned by its jobs); everything that crosses to another service is an ``astra_proto`` model
(``ToolSpec``, ``Message``, ``Trajectory``, ``StageProgress``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import Field

from astra_proto import ContractModel, StageProgress, ToolSpec

TOOLSET_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
"""A toolset id: one file name (letters, digits, '_', '.', '-') that does not start with a dot."""

DATASET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
"""A dataset name, by the same rule."""

ProgressFn = Callable[[StageProgress], None]
"""Called with a stage's counts whenever they change (a job stores them)."""


class RejectionSink(Protocol):
    """Told about each item a stage drops: which, why, and the start of the LLM's reply."""

    def __call__(
        self,
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None: ...


def ignore_rejection(
    stage: str,
    reason: str,
    *,
    item: str | None = None,
    message: str | None = None,
    excerpt: str | None = None,
) -> None:
    """A ``RejectionSink`` that keeps nothing (the counts are kept anyway)."""


def report(progress: ProgressFn | None, stage: StageProgress) -> None:
    """Send a copy of ``stage`` to ``progress`` when one was given."""
    if progress is not None:
        progress(stage.model_copy(deep=True))


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


class ChainProposal(ContractModel):
    """A (task, tool chain) pair proposed by the LLM for one server."""

    task: str
    chain: list[str]


class Chain(ContractModel):
    """An ordered list of tools of one server, to be called in that order."""

    server: str
    tools: list[str] = Field(min_length=1)


class SynthTask(ContractModel):
    """A user task for a server, with the chain it was written for (if any) and its scores."""

    id: str
    server: str
    question: str = Field(min_length=1)
    chain: list[str] | None = None
    origin: str = Field(description="'chain', 'server', or 'augment:<kind>' of a parent task.")
    parent_id: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)


class TaskSynthesis(ContractModel):
    """What ``synthesize_tasks`` produced for a toolset."""

    toolset_id: str
    chains_sampled: int = 0
    graphs: list[ToolGraph] = Field(default_factory=list)
    chains_kept: list[Chain] = Field(default_factory=list)
    tasks: list[SynthTask] = Field(default_factory=list)
    rejected: dict[str, int] = Field(default_factory=dict, description="Drops by reason.")


class DimensionStats(ContractModel):
    """Statistics of one judged dimension over a batch."""

    mean: float
    counts: dict[str, int] = Field(description="How often each score (0, 0.5, 1) was given.")


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
