"""Episodes: one isolated run of an environment, and the calls made in it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from astra_proto.base import ContractModel
from astra_proto.rewards import RewardBreakdown
from astra_proto.tools import ToolSpec


class EpisodeState(StrEnum):
    """Lifecycle of an episode."""

    OPEN = "open"
    SCORED = "scored"
    CLOSED = "closed"
    EXPIRED = "expired"


class ToolCallRecord(ContractModel):
    """One tool call as the environment saw it."""

    seq: int = Field(ge=0, description="Position in the episode's call log.")
    tool_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: Any = Field(default=None, description="Structured output when the call succeeded.")
    error: str | None = Field(default=None, description="Why the call failed, when it did.")
    latency_ms: float = Field(ge=0.0)
    turn: int = Field(default=0, ge=0, description="User turn the call was made in (0 first).")
    distractor: bool = Field(default=False, description="Whether the tool was a distractor.")
    at: datetime


class Episode(ContractModel):
    """A fresh, isolated state of one environment, reachable over MCP at ``mcp_url``."""

    id: str
    env_id: str
    seed: int = 0
    state: EpisodeState = EpisodeState.OPEN
    mcp_url: str = Field(description="Streamable-HTTP MCP endpoint serving this episode.")
    tools: list[ToolSpec] = Field(description="Tools offered, distractors included.")
    distractor_tools: list[str] = Field(default_factory=list)
    turn: int = Field(default=0, ge=0, description="Current user turn (multi-turn tasks).")
    calls: list[ToolCallRecord] = Field(default_factory=list)
    reward: RewardBreakdown | None = None
    created_at: datetime
    last_active_at: datetime


class DistractorRef(ContractModel):
    """A real tool of another environment, offered in an episode as a distractor."""

    env_id: str
    tool_name: str


class EpisodeRequest(ContractModel):
    """Create an episode of ``env_id``: a fresh, isolated state."""

    env_id: str
    seed: int = Field(default=0, ge=-(2**31), le=2**31 - 1, description="A database integer.")
    distractors: list[DistractorRef] = Field(default_factory=list, max_length=64)


class ScoreRequest(ContractModel):
    """Score an episode given the agent's final answer (None when it gave none)."""

    final_answer: str | None = Field(default=None, max_length=100_000)
