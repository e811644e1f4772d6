"""Answer strings, and whole-value matching (the rule envhost scores by, from astra_proto)."""

from __future__ import annotations

from astra_proto.answers import leaf_values, normalise
from astra_proto.answers import output_holds_answer as holds_answer
from astra_synth.procedural.schema import Value

__all__ = ["answer_text", "holds_answer", "leaf_values", "normalise"]


def answer_text(value: Value) -> str:
    """A value as a sub-answer string (numbers as Python writes them: 412500, 379.5)."""
    return repr(value) if isinstance(value, float) else str(value)
