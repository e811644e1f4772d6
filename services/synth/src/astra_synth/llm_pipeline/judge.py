"""Stage B2: tool necessity with the leaf rule, and the four-part quality score.

Both are LLM judgements with strict replies. A judge that errors, refuses or answers in any
other shape REJECTS the item (``judge_error``): nothing passes by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import Field

from astra_synth.llm.types import LLMRequestRejected
from astra_synth.llm_pipeline.ask import StageAsker, StageReply, Unparseable
from astra_synth.llm_pipeline.decompose import Decomposition
from astra_synth.llm_pipeline.outcomes import PASSED_QUALITY, StageFailure
from astra_synth.llm_pipeline.settings import PipelineSettings

SYSTEM_NECESSITY = """You judge, for each sub-question of a decomposed question, whether \
answering it needs a tool call (a lookup, a computation over data, an external system) or \
can be answered from the question and the earlier answers alone.
Reply with one JSON object and nothing else:
{"judgements": [{"id": "<sub-question id>", "needs_tool": true, "reason": "<one sentence>"}]}
with exactly one judgement per sub-question."""
"""System prompt of the tool-necessity judgement; the input is the decomposition."""

SYSTEM_QUALITY = """You grade a decomposition of a question into sub-questions. Give each \
criterion 1 if it fully holds, else 0:
- dependencies_correct: every "depends_on" lists exactly the sub-questions whose answers it uses;
- atomic: every sub-question asks for one fact;
- order_rational: the order is the natural one and no hop is added for show;
- covers_question: the sub-questions together answer the main question with its answer.
Reply with one JSON object and nothing else:
{"dependencies_correct": 0, "atomic": 0, "order_rational": 0, "covers_question": 0,
 "reason": "<one sentence>"}"""
"""System prompt of the quality judgement; the input is the decomposition."""

_Judgement = TypeVar("_Judgement", bound=StageReply)

QUALITY_CRITERIA = ("dependencies_correct", "atomic", "order_rational", "covers_question")


class Necessity(StageReply):
    id: str
    needs_tool: bool
    reason: str = ""


class NecessityReply(StageReply):
    judgements: list[Necessity] = Field(min_length=1)


class QualityReply(StageReply):
    dependencies_correct: Literal[0, 1]
    atomic: Literal[0, 1]
    order_rational: Literal[0, 1]
    covers_question: Literal[0, 1]
    reason: str = ""

    @property
    def score(self) -> float:
        """The quality score QS: the mean of the four judgements."""
        marks = [self.dependencies_correct, self.atomic, self.order_rational, self.covers_question]
        return sum(marks) / len(marks)


@dataclass(frozen=True)
class Judged:
    """A decomposition that passed: which sub-questions need a tool, and its quality score."""

    needs_tool: dict[str, bool]
    quality: float


def decomposition_input(decomposition: Decomposition) -> dict[str, Any]:
    """The judges' input: the main question, its answer and the sub-question DAG."""
    return {
        "question": decomposition.question,
        "answer": decomposition.answer,
        "sub_questions": [
            q.model_dump(include={"id", "question", "answer", "depends_on"})
            for q in decomposition.sub_questions
        ],
    }


async def judge(
    decomposition: Decomposition, asker: StageAsker, settings: PipelineSettings
) -> Judged:
    """Necessity then quality; raises ``StageFailure`` at stage ``passed_quality``."""
    payload = decomposition_input(decomposition)
    necessity = await _ask(asker, SYSTEM_NECESSITY, payload, NecessityReply)
    needs_tool = check_necessity(decomposition, necessity)
    quality = await _ask(asker, SYSTEM_QUALITY, payload, QualityReply)
    if quality.score < settings.quality_threshold:
        failed = [c for c in QUALITY_CRITERIA if not getattr(quality, c)]
        raise StageFailure(
            PASSED_QUALITY,
            "quality_below_threshold",
            f"score {quality.score:.2f} < {settings.quality_threshold}; failed {failed}: "
            f"{quality.reason}",
        )
    return Judged(needs_tool=needs_tool, quality=quality.score)


def check_necessity(decomposition: Decomposition, reply: NecessityReply) -> dict[str, bool]:
    """Whether each sub-question needs a tool; raises unless the judgement covers every
    sub-question once, some sub-question needs a tool, and no-tool ones are leaves."""
    ids = [q.id for q in decomposition.sub_questions]
    judged = [j.id for j in reply.judgements]
    if sorted(judged) != sorted(ids):
        raise StageFailure(
            PASSED_QUALITY,
            "judge_error",
            f"the necessity judgement covers {judged}, not each of {ids} once",
        )
    needs_tool = {j.id: j.needs_tool for j in reply.judgements}
    if not any(needs_tool.values()):
        raise StageFailure(PASSED_QUALITY, "no_tool_needed", "no sub-question needs a tool")
    dependents = {d for q in decomposition.sub_questions for d in q.depends_on}
    inner = [i for i in ids if not needs_tool[i] and i in dependents]
    if inner:
        raise StageFailure(
            PASSED_QUALITY,
            "tool_not_needed_at_inner_node",
            f"{inner} need no tool but other sub-questions depend on them",
        )
    return needs_tool


async def _ask(
    asker: StageAsker, system: str, payload: dict[str, Any], model: type[_Judgement]
) -> _Judgement:
    try:
        return await asker.ask(PASSED_QUALITY, system, payload, model, judge=True)
    except (Unparseable, LLMRequestRejected) as exc:
        raise StageFailure(PASSED_QUALITY, "judge_error", str(exc)) from None
