"""What the pipeline reports: stage names, rejection reasons, outcomes and progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from astra_proto import EnvironmentSpec

DECOMPOSED = "decomposed"
PASSED_QUALITY = "passed_quality"
TOOLS_VERIFIED = "tools_verified"
MERGED = "merged"
REGISTERED = "registered"
STAGES = (DECOMPOSED, PASSED_QUALITY, TOOLS_VERIFIED, MERGED, REGISTERED)
"""Progress stages in pipeline order (the job's ``StageProgress`` list)."""

REASONS = frozenset(
    {
        # decomposed
        "unparseable_decomposition",
        "invalid_decomposition",
        "cyclic_dependencies",
        "hop_budget_exceeded",
        "too_many_sub_questions",
        "llm_request_rejected",
        # passed_quality
        "judge_error",
        "no_tool_needed",
        "tool_not_needed_at_inner_node",
        "quality_below_threshold",
        # tools_verified
        "tool_verification_failed",
        # merged
        "merge_failed",
        # registered
        "invalid_environment",
        "certificate_failed",
    }
)
"""Every rejection reason (short stable slugs; the detail goes in ``Rejected.detail``)."""


class StageFailure(Exception):
    """An item cannot pass ``stage``: the pipeline turns it into a ``Rejected``."""

    def __init__(self, stage: str, reason: str, detail: str = "") -> None:
        if stage not in STAGES or reason not in REASONS:
            raise ValueError(f"unknown stage or reason: {stage!r}, {reason!r}")
        super().__init__(f"{stage}/{reason}: {detail}")
        self.stage = stage
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Accepted:
    """An item that became an environment; ``spec`` carries a passed certificate."""

    spec: EnvironmentSpec
    item_index: int


@dataclass(frozen=True)
class Rejected:
    """An item dropped at ``stage`` for ``reason`` (a slug of ``REASONS``); ``detail`` says
    what exactly went wrong, for people."""

    item_index: int
    stage: str
    reason: str
    detail: str = ""
    excerpt: str = ""
    """The start of the model's last reply about the item (empty when there was none)."""


PipelineOutcome = Accepted | Rejected


class ProgressSink(Protocol):
    """Receives stage counts as items move through the pipeline."""

    def set_total(self, stage: str, n: int) -> None:
        """``n`` items are expected to reach ``stage`` at most."""
        ...

    def advance(self, stage: str, n: int = 1) -> None:
        """``n`` more items passed ``stage``."""
        ...

    def reject(
        self,
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        """One item was dropped at ``stage`` for ``reason``: ``item`` says which, ``message``
        why, ``excerpt`` is the start of the model reply that was refused."""
        ...


class StageCounts:
    """A ``ProgressSink`` that keeps the counts in memory (tests, benchmarks, logging)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = dict.fromkeys(STAGES, 0)
        self.rejected: dict[str, dict[str, int]] = {stage: {} for stage in STAGES}

    def set_total(self, stage: str, n: int) -> None:
        self.totals[stage] = n

    def advance(self, stage: str, n: int = 1) -> None:
        self.done[stage] = self.done.get(stage, 0) + n

    def reject(
        self,
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        counts = self.rejected.setdefault(stage, {})
        counts[reason] = counts.get(reason, 0) + 1
