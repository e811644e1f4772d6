"""The whole-value answer rule shared by envhost's scoring and synth's certificates."""

from __future__ import annotations

import pytest

from astra_proto.answers import normalise, output_holds_answer, text_holds_answer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,200.50", "1200.5"),
        (1200.5, "1200.5"),
        (21.0, "21"),
        (True, "true"),
        ("  Maple   Court. ", "maple court"),
        ("ÉCOLE", "ecole"),
    ],
)
def test_normalise(value: object, expected: str) -> None:
    assert normalise(value) == expected


def test_whole_values_match_substrings_do_not() -> None:
    output = {"flight": {"id": "FLT-1", "seats": 12, "tags": ["Sunny", "late"]}}
    assert output_holds_answer(output, "12")
    assert output_holds_answer(output, "sunny")
    assert not output_holds_answer(output, "1")  # inside 12 and FLT-1: no accidental match
    assert not output_holds_answer(output, "FLT")
    assert not output_holds_answer(output, "")


def test_final_answer_text_matches_whole_words() -> None:
    assert text_holds_answer("It will be 21 degrees.", "21")
    assert not text_holds_answer("It will be 210 degrees.", "21")
    assert text_holds_answer("Book New York, not Boston.", "new york")
