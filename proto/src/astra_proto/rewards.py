"""The trajectory-level F1 reward over sub-questions solved and tool calls made."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from astra_proto.base import ContractModel

PRECISION_EPSILON = 1e-6
"""The ε in precision = n̂ / (c + ε)."""


class RewardBreakdown(ContractModel):
    """How a trajectory was scored.

    n = sub-questions of the environment, n̂ = those solved, c = tool calls made (distractor
    calls and failed calls included). recall = n̂/n; precision = n̂/(c+ε), capped at 1 (n̂ can
    exceed c: one output may answer two sub-questions, a no-tool leaf needs no call);
    F1 = 2pr/(p+r), and F1 = 0 when n̂ = 0, so also when n = 0. A sub-question counts as
    solved when a tool call made in the episode returned a structured output whose
    normalised value matches its answer (or, for a leaf that needs no tool, when the final
    answer does) — the environment's verifier decides.
    """

    n_subquestions: int = Field(ge=0, description="n")
    n_solved: int = Field(ge=0, description="n̂")
    n_calls: int = Field(ge=0, description="c")
    precision: float = Field(ge=0.0, le=1.0)
    recall: float = Field(ge=0.0, le=1.0)
    f1: float = Field(ge=0.0, le=1.0)
    solved_ids: list[str] = Field(default_factory=list)
    final_answer_correct: bool | None = None
    verifier: str = Field(
        default="subquestion_f1",
        description="What scored it: 'subquestion_f1' (the F1 above), or a benchmark's own "
        "checker (e.g. 'bfcl_multi_turn', where f1 is 1 for a pass and 0 otherwise).",
    )
    details: dict[str, Any] = Field(
        default_factory=dict, description="Verifier-specific findings (e.g. a checker's error)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RewardBreakdown:
        if self.n_solved > self.n_subquestions:
            raise ValueError("n_solved cannot exceed n_subquestions")
        if len(set(self.solved_ids)) != len(self.solved_ids):
            raise ValueError("solved_ids must not repeat an id")
        if len(self.solved_ids) not in (0, self.n_solved):
            raise ValueError("solved_ids must list exactly the solved sub-questions")
        return self

    @property
    def success(self) -> bool:
        """The episode was solved perfectly: F1 at its maximum for ``n`` sub-questions (every
        one solved with no wasted call; the maximum is just under 1 because of the ε in the
        precision), or a verifier's pass (BFCL: F1 = 1)."""
        if self.n_subquestions == 0 or self.n_solved < self.n_subquestions:
            return False
        n = self.n_subquestions
        precision = min(n / (n + PRECISION_EPSILON), 1.0)
        best = 2 * precision / (precision + 1.0)
        return self.f1 >= best - 1e-9

    @classmethod
    def compute(
        cls,
        n_subquestions: int,
        solved_ids: list[str],
        n_calls: int,
        final_answer_correct: bool | None = None,
    ) -> RewardBreakdown:
        """Score ``solved_ids`` out of ``n_subquestions`` with ``n_calls`` calls."""
        n_solved = len(set(solved_ids))
        if n_subquestions < 0 or n_calls < 0:
            raise ValueError("counts must be non-negative")
        if n_solved > n_subquestions:
            raise ValueError("more sub-questions solved than exist")
        recall = n_solved / n_subquestions if n_subquestions else 0.0
        precision = n_solved / (n_calls + PRECISION_EPSILON) if n_solved else 0.0
        precision = min(precision, 1.0)
        f1 = 2 * precision * recall / (precision + recall) if n_solved else 0.0
        return cls(
            n_subquestions=n_subquestions,
            n_solved=n_solved,
            n_calls=n_calls,
            precision=precision,
            recall=recall,
            f1=min(f1, 1.0),
            solved_ids=sorted(set(solved_ids)),
            final_answer_correct=final_answer_correct,
        )
