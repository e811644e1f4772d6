"""Whole-value answer matching, the same rule envhost scores episodes by.

A copy of ``astra_envhost.scoring.normalise``/``output_holds_answer`` (services never import
each other); a property test checks that both agree. The generator uses it to make sure no
wrong call of a tool can hold a sub-question's answer, the certificate to record whether a
replayed output holds it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from astra_synth.procedural.schema import Value

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_EDGE_PUNCTUATION = " \t\n\r.,;:!?\"'`()[]{}"


def normalise(value: Any) -> str:
    """Canonical text of a scalar: case-folded, accents and edge punctuation stripped,
    whitespace collapsed, numbers written canonically ("1,200.50" → "1200.5")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _canonical_number(float(value))
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = " ".join(text.split()).strip(_EDGE_PUNCTUATION)
    if _NUMBER.match(text):
        return _canonical_number(float(text.replace(",", "")))
    return text


def _canonical_number(number: float) -> str:
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def leaf_values(output: Any) -> Iterator[Any]:
    """Every scalar in a JSON value (dict values, list items), depth first."""
    if isinstance(output, dict):
        for item in output.values():
            yield from leaf_values(item)
    elif isinstance(output, list | tuple):
        for item in output:
            yield from leaf_values(item)
    elif output is not None:
        yield output


def holds_answer(output: Any, answer: str) -> bool:
    """Whether a structured output holds the answer as one of its values (normalised)."""
    expected = normalise(answer)
    return bool(expected) and any(normalise(value) == expected for value in leaf_values(output))


def answer_text(value: Value) -> str:
    """A value as a sub-answer string (numbers as Python writes them: 412500, 379.5)."""
    return repr(value) if isinstance(value, float) else str(value)
