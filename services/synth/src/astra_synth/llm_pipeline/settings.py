"""Thresholds, retry bounds and sampling parameters of the LLM environment pipeline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ALLOWED_IMPORTS = (
    "math",
    "re",
    "json",
    "datetime",
    "decimal",
    "fractions",
    "statistics",
    "string",
    "itertools",
    "functools",
    "collections",
    "typing",
    "dataclasses",
    "enum",
)


class PipelineSettings(BaseModel):
    """How strict and how persistent the pipeline is. Defaults follow the published method
    (docs/method.md B1-B5) where it gives a number."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    quality_threshold: float = Field(default=0.85, ge=0.0, le=1.0)
    """An instance is kept only if its quality score (mean of four 0/1 judgements) reaches this."""

    inner_retries: int = Field(default=5, ge=1, le=50)
    """Code attempts per outer attempt of one sub-question's tool (each sees the last failure)."""

    outer_retries: int = Field(default=15, ge=1, le=100)
    """Attempts of schema -> enrichment -> call -> code for one sub-question before rejection."""

    merge_retries: int = Field(default=20, ge=1, le=100)
    """Attempts to merge one cluster of same-intent tools before the instance is dropped."""

    knowledge_hops: int = Field(default=3, ge=1, le=20)
    """Hops asked for in knowledge mode when an item names none (published mean 4.4)."""

    max_hops: int = Field(default=20, ge=1, le=100)
    """Hop budget: a decomposition whose longest dependency chain is longer is rejected
    (published range 1-20)."""

    max_sub_questions: int = Field(default=20, ge=1, le=200)
    """A decomposition with more sub-questions is rejected."""

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    """Sampling temperature of the generating stages (decomposition, tools, merging)."""

    judge_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature of the judging stages (tool necessity, quality, clustering)."""

    max_tokens: int = Field(default=2048, ge=16, le=131072)
    """Completion budget of one LLM call."""

    json_mode: bool = True
    """Ask the endpoint for ``response_format={"type": "json_object"}``; the reply is parsed
    strictly either way."""

    grounded_arguments: bool = True
    """A reference call's required argument values must appear in the question, the
    sub-question or the answers it depends on (a call cannot smuggle in the answer)."""

    allowed_imports: tuple[str, ...] = DEFAULT_ALLOWED_IMPORTS
    """Modules tool code may import; any other import rejects the code before it runs."""

    max_code_chars: int = Field(default=20000, ge=100)
    """Longest tool source accepted."""

    concurrency: int = Field(default=4, ge=1, le=256)
    """Items processed at the same time."""
