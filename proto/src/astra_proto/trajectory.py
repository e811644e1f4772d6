"""Trajectories: what a policy did in an episode, as the trainer consumes it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, model_validator

from astra_proto.base import ContractModel
from astra_proto.chat import Message
from astra_proto.rewards import RewardBreakdown
from astra_proto.tools import ToolSpec


class FinishReason(StrEnum):
    """Why an agent loop stopped."""

    FINAL_ANSWER = "final_answer"
    TURN_LIMIT = "turn_limit"
    TOKEN_BUDGET = "token_budget"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


class Timings(ContractModel):
    """Wall-clock accounting of one trajectory."""

    started_at: datetime
    finished_at: datetime
    llm_seconds: float = Field(default=0.0, ge=0.0)
    tool_seconds: float = Field(default=0.0, ge=0.0)


class Trajectory(ContractModel):
    """A scored multi-turn trajectory.

    When the policy server returned token ids and logprobs, ``token_ids``, ``logprobs`` and
    ``loss_mask`` are aligned (one entry per token; mask 1 = a policy token to train on) and the
    trainer never re-tokenizes. Otherwise ``text_only`` is true and they are absent.
    """

    id: str = Field(description="Unique record id; the stream's idempotency key.")
    env_id: str
    episode_id: str | None = None
    group_id: str | None = Field(default=None, description="Rollouts of one task share it.")
    policy_version: int = Field(ge=0)
    model: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(description="Tools offered, distractors included.")
    distractor_tools: list[str] = Field(default_factory=list)
    token_ids: list[int] | None = None
    # NaN and ±inf would be written as JSON null and fail validation at the trainer.
    logprobs: list[Annotated[float, Field(allow_inf_nan=False)]] | None = None
    loss_mask: list[int] | None = None
    text_only: bool = True
    reward: RewardBreakdown | None = None
    finish_reason: FinishReason
    failure_reason: str | None = None
    turns: int = Field(ge=0)
    timings: Timings
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aligned(self) -> Trajectory:
        arrays = [self.token_ids, self.logprobs, self.loss_mask]
        present = [a for a in arrays if a is not None]
        if self.text_only and present:
            raise ValueError("text-only trajectories carry no token arrays")
        if not self.text_only:
            if len(present) != 3:
                raise ValueError("token_ids, logprobs and loss_mask go together")
            if len({len(a) for a in present}) != 1:
                raise ValueError("token_ids, logprobs and loss_mask must have one length")
            if any(m not in (0, 1) for m in self.loss_mask or []):
                raise ValueError("loss_mask holds only 0 and 1")
        if self.finish_reason == FinishReason.ERROR and not self.failure_reason:
            raise ValueError("failed trajectories need failure_reason")
        return self
