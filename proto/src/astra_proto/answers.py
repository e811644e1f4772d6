"""Whole-value answer matching: the rule that decides whether a sub-question was answered.

Shared by envhost (scoring episodes) and synth (building environments and certificates), so
both apply exactly the same rule. Values are compared whole after normalisation, never as a
substring of printed text, so short answers such as "1" or "no" cannot match by accident.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_EDGE_PUNCTUATION = " \t\n\r.,;:!?\"'`()[]{}"


def normalise(value: Any) -> str:
    """Canonical text of a scalar: case-folded, accents and edge punctuation stripped,
    whitespace collapsed, numbers written canonically ("1,200.50" → "1200.5", True → "true").
    """
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


def output_holds_answer(output: Any, answer: str) -> bool:
    """Whether a structured output holds the answer as one of its values (normalised)."""
    expected = normalise(answer)
    return bool(expected) and any(normalise(value) == expected for value in leaf_values(output))


def text_holds_answer(text: str, answer: str) -> bool:
    """Whether free text contains the normalised answer as whole words."""
    expected = normalise(answer)
    if not expected:
        return False
    haystack = " ".join(normalise(token) for token in re.split(r"\s+", text) if token)
    return re.search(rf"(?<!\w){re.escape(expected)}(?!\w)", haystack) is not None
