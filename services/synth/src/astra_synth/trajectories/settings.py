"""Knobs of trajectory synthesis, with the paper's defaults (docs/method.md part A)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AugmentKind = Literal["diverse", "complex", "persona"]
ALL_AUGMENTATIONS: list[AugmentKind] = ["diverse", "complex", "persona"]


class TrajectorySettings(BaseModel):
    """How toolsets are filtered, chains sampled and checked, tasks written and kept."""

    model_config = ConfigDict(extra="forbid")

    min_tools_per_server: int = Field(default=3, ge=1)
    """Servers with fewer usable tools are dropped."""
    min_description_words: int = Field(default=3, ge=1)
    """Tool descriptions with fewer words are 'vague' and the tool is dropped."""
    proposals_per_server: int = Field(default=4, ge=0)
    """(task, chain) pairs asked of the LLM per server, to weight the tool-call graph."""
    walks_per_server: int = Field(default=8, ge=0)
    """Candidate chains sampled per server."""
    min_chain_length: int = Field(default=2, ge=1)
    max_chain_length: int = Field(default=5, ge=1)
    acyclic: bool = True
    """Walks never revisit a tool."""
    coherence_votes: int = Field(default=3, ge=1)
    """LLM samples voting whether a chain makes sense; a strict majority must say yes."""
    server_tasks_per_server: int = Field(default=2, ge=0)
    """Tasks written from the server description alone."""
    augmentations: list[AugmentKind] = Field(default_factory=lambda: list(ALL_AUGMENTATIONS))
    min_question_quality: int = Field(default=4, ge=1, le=5)
    min_realism: int = Field(default=4, ge=1, le=5)
    min_tool_necessity: int = Field(default=4, ge=1, le=5)
    """Task thresholds (scores 1-5 from the LLM): a task below any one is dropped."""
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    judge_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=16)
    seed: int = 0
    """Seeds the walks (and the emulator's failures)."""

    @model_validator(mode="after")
    def _lengths(self) -> TrajectorySettings:
        if self.min_chain_length > self.max_chain_length:
            raise ValueError("min_chain_length must not exceed max_chain_length")
        return self
