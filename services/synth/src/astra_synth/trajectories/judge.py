"""The seven-part quality judge of trajectories (docs/method.md A5), with a selection cutoff.

Each dimension gets 0, 0.5 or 1 from the LLM; a sample's score is their mean. The two
dimensions that look at later rounds (understanding tool outputs, re-planning) may be null for
a trajectory with a single round of calls and are then left out of the mean. A judge that
errors or answers out of range REJECTS the sample (the published scripts scored errors as 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, Field

from astra_proto import ContractModel, Trajectory
from astra_synth.llm import ChatModel, LLMError, LLMUnavailable, LLMUsage
from astra_synth.llm_pipeline.ask import StageReply, Unparseable
from astra_synth.trajectories.asker import Asker
from astra_synth.trajectories.export import message_row
from astra_synth.trajectories.models import DimensionStats, RejectionSink, ignore_rejection

DIMENSIONS = (
    "query_understanding",
    "planning",
    "tool_output_understanding",
    "replanning",
    "call_success",
    "call_necessity",
    "final_answer",
)
LATER_ROUND_DIMENSIONS = ("tool_output_understanding", "replanning")
SYSTEM_JUDGE = (
    "You grade a tool-using assistant's trajectory on seven dimensions, each 0, 0.5 or 1: "
    "query_understanding (it understood the request), planning (its first turn plans sensible "
    "calls), tool_output_understanding (from the second round of calls on: it read earlier "
    "outputs correctly), replanning (from the second round on: it adapted its plan to what it "
    "learned, errors included), call_success (share of calls that succeeded), call_necessity "
    "(no useless calls), final_answer (correct, complete, grounded in the outputs). Use null "
    "for the two later-round dimensions when there was only one round of calls. Reply with "
    "JSON only: {" + ", ".join(f'"{d}": 0|0.5|1' for d in DIMENSIONS) + ', "notes": "..."}'
)

GRADES = (0.0, 0.5, 1.0)


def _grade(value: float) -> float:
    if value not in GRADES:
        raise ValueError(f"a grade is 0, 0.5 or 1, not {value}")
    return value


Grade = Annotated[float, AfterValidator(_grade)]


class JudgeReply(StageReply):
    query_understanding: Grade
    planning: Grade
    tool_output_understanding: Grade | None
    replanning: Grade | None
    call_success: Grade
    call_necessity: Grade
    final_answer: Grade
    notes: str = ""


class JudgedSample(ContractModel):
    """A trajectory's grades and its mean score."""

    trajectory_id: str
    grades: dict[str, float | None]
    score: float = Field(ge=0.0, le=1.0)
    notes: str = ""


class JudgeReport(ContractModel):
    """A judged batch: samples kept (score >= cutoff), all grades, drops and statistics."""

    cutoff: float
    kept: list[str] = Field(default_factory=list)
    samples: list[JudgedSample] = Field(default_factory=list)
    rejected: dict[str, int] = Field(default_factory=dict)
    dimensions: dict[str, DimensionStats] = Field(default_factory=dict)


def call_rounds(trajectory: Trajectory) -> int:
    """Assistant messages that issue tool calls."""
    return sum(1 for m in trajectory.messages if m.role == "assistant" and m.tool_calls)


class Judge:
    """Grades trajectories with the chat model."""

    def __init__(
        self,
        llm: ChatModel,
        *,
        cutoff: float = 0.75,
        temperature: float = 0.0,
        on_reject: RejectionSink = ignore_rejection,
        usage: LLMUsage | None = None,
    ) -> None:
        if not 0.0 <= cutoff <= 1.0:
            raise ValueError("cutoff must be within [0, 1]")
        self.cutoff = cutoff
        self.on_reject = on_reject
        self._asker = Asker(llm, judge_temperature=temperature, usage=usage)

    async def grade(self, trajectory: Trajectory) -> JudgedSample:
        """Grades of one trajectory; raises ``Unparseable`` / ``LLMError`` / ``ValueError``
        (later-round grades that are null although there were later rounds)."""
        payload = {
            "tools": [t.to_openai() for t in trajectory.tools],
            "messages": [message_row(m) for m in trajectory.messages],
        }
        reply = await self._asker.ask("judge", SYSTEM_JUDGE, payload, JudgeReply, judge=True)
        grades: dict[str, float | None] = {d: getattr(reply, d) for d in DIMENSIONS}
        if call_rounds(trajectory) > 1 and any(grades[d] is None for d in LATER_ROUND_DIMENSIONS):
            raise ValueError("later-round dimensions left null for a multi-round trajectory")
        given = [g for g in grades.values() if g is not None]
        return JudgedSample(
            trajectory_id=trajectory.id,
            grades=grades,
            score=sum(given) / len(given),
            notes=reply.notes,
        )

    async def judge_batch(
        self,
        trajectories: list[Trajectory],
        progress: Callable[[JudgeReport], None] | None = None,
    ) -> JudgeReport:
        """Grade every trajectory; keep those at or above the cutoff. A judge failure rejects
        the sample ('judge_error'); ``LLMUnavailable`` propagates. ``progress`` sees the
        report after each trajectory; ``on_reject`` (of the constructor) each drop."""
        report = JudgeReport(cutoff=self.cutoff)
        rejected: Counter[str] = Counter()
        for trajectory in trajectories:
            try:
                sample = await self.grade(trajectory)
            except LLMUnavailable:
                raise
            except (Unparseable, LLMError, ValueError) as exc:
                rejected["judge_error"] += 1
                self.on_reject(
                    "judged",
                    "judge_error",
                    item=trajectory.id,
                    message=f"{type(exc).__name__}: {exc}",
                    excerpt=exc.reply if isinstance(exc, Unparseable) else None,
                )
            else:
                report.samples.append(sample)
                if sample.score >= self.cutoff:
                    report.kept.append(trajectory.id)
                else:
                    rejected["below_cutoff"] += 1
                    self.on_reject(
                        "judged",
                        "below_cutoff",
                        item=trajectory.id,
                        message=f"score {sample.score:.2f} < cutoff {self.cutoff}"
                        + (f"; {sample.notes}" if sample.notes else ""),
                    )
            if progress is not None:
                report.rejected = dict(rejected)
                progress(report)
        report.rejected = dict(rejected)
        report.dimensions = dimension_stats(report.samples)
        return report


def dimension_stats(samples: list[JudgedSample]) -> dict[str, DimensionStats]:
    """Mean and grade counts per dimension (null grades left out)."""
    stats = {}
    for dimension in DIMENSIONS:
        grades = [s.grades[dimension] for s in samples if s.grades.get(dimension) is not None]
        if grades:
            counts = Counter(str(g) for g in grades)
            stats[dimension] = DimensionStats(
                mean=sum(g for g in grades if g is not None) / len(grades), counts=dict(counts)
            )
    return stats
