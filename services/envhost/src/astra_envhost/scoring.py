"""The verifier of synthetic environments: which sub-questions an episode solved.

A sub-question counts as **solved** when a successful call of *its* tool (not a distractor)
returned a structured output holding a value whose normalised form equals the normalised
sub-answer. Values are compared whole (a leaf of the JSON output, or a whole string), never as
a substring of printed text, so short answers such as "1" or "no" cannot match by accident.
A sub-question that needs no tool (only allowed at a leaf of the DAG) counts as solved when
the final answer contains its normalised answer as whole words. n̂ = 0 gives reward 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from astra_proto import EnvironmentSpec, RewardBreakdown, ToolCallRecord
from astra_proto.answers import output_holds_answer, text_holds_answer

__all__ = ["score_synthetic"]


def score_synthetic(
    spec: EnvironmentSpec, calls: Sequence[ToolCallRecord], final_answer: str | None
) -> RewardBreakdown:
    """The reward breakdown of an episode of a synthetic environment."""
    solved: list[str] = []
    for question in spec.sub_questions:
        if question.tool_name is None:
            if final_answer and text_holds_answer(final_answer, question.answer):
                solved.append(question.id)
            continue
        if any(
            call.tool_name == question.tool_name
            and not call.distractor
            and call.error is None
            and output_holds_answer(call.result, question.answer)
            for call in calls
        ):
            solved.append(question.id)
    final_correct = None
    if spec.answer and final_answer is not None:
        final_correct = text_holds_answer(final_answer, spec.answer)
    return RewardBreakdown.compute(
        n_subquestions=len(spec.sub_questions),
        solved_ids=solved,
        n_calls=len(calls),
        final_answer_correct=final_correct,
    )
