"""Records of trajectory synthesis that stay inside the synth service: chains, tasks, judged
samples (stored as files under its data directory and summed up in its jobs' results).

What its API answers (toolsets, tool-call graphs, dataset manifests) is a contract of
``astra_proto.api.synth``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import Field

from astra_proto import ContractModel, StageProgress
from astra_proto.api.synth import ToolGraph

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
