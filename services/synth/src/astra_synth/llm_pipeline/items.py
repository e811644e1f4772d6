"""Pipeline inputs: QA pairs and knowledge texts, and their JSONL parsing.

Parsing never fails as a whole: each malformed line is reported with its line number and
skipped, and the good lines go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_LINES = 100_000
"""Most items one JSONL text may hold; lines past it are reported, not read."""

MAX_LINE_CHARS = 100_000
"""Longest accepted line (a knowledge text included)."""

MAX_QUESTION_CHARS = 4_000
MAX_ANSWER_CHARS = 1_000
MAX_KNOWLEDGE_CHARS = 50_000


class QaItem(BaseModel):
    """A question-answer pair to decompose (``qa`` mode)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)
    domain: str | None = Field(default=None, min_length=1, max_length=64)
    id: str | None = Field(default=None, max_length=128, description="The caller's own id.")


class KnowledgeItem(BaseModel):
    """A knowledge text to write a multi-hop question from (``knowledge`` mode)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=MAX_KNOWLEDGE_CHARS)
    hops: int | None = Field(default=None, ge=1, le=20, description="Hops to aim for.")
    domain: str | None = Field(default=None, min_length=1, max_length=64)
    id: str | None = Field(default=None, max_length=128)


Item = QaItem | KnowledgeItem
_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class LineError:
    """Why one input line was skipped (``line`` counts from 1)."""

    line: int
    message: str


def parse_qa_lines(text: str) -> tuple[list[QaItem], list[LineError]]:
    """QA items from JSONL (one ``{"question": ..., "answer": ...}`` object a line; blank
    lines ignored), and an error for each line that is not one."""
    return _parse_lines(text, QaItem)


def parse_knowledge_lines(text: str) -> tuple[list[KnowledgeItem], list[LineError]]:
    """Knowledge items from JSONL (``{"text": ..., "hops": 3}`` a line), as ``parse_qa_lines``."""
    return _parse_lines(text, KnowledgeItem)


def _parse_lines(text: str, model: type[_Model]) -> tuple[list[_Model], list[LineError]]:
    items: list[_Model] = []
    errors: list[LineError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(items) >= MAX_LINES:
            errors.append(LineError(number, f"more than {MAX_LINES} items: the rest is skipped"))
            break
        if len(line) > MAX_LINE_CHARS:
            errors.append(LineError(number, f"line longer than {MAX_LINE_CHARS} characters"))
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"not JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(data, dict):
            errors.append(LineError(number, f"expected a JSON object, got {type(data).__name__}"))
            continue
        try:
            items.append(model.model_validate(data))
        except ValidationError as exc:
            errors.append(LineError(number, _validation_message(exc)))
    return items, errors


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "line"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
