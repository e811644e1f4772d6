"""Units of the LLM pipeline that need no LLM and no sandbox: input parsing, strict reply
parsing, the static code check, DAG topology, schema compatibility, argument grounding."""

from __future__ import annotations

import json

import pytest

from astra_proto import ScenarioType, SubQuestion, ToolSpec
from astra_synth.llm_pipeline import REASONS, STAGES, PipelineSettings, parse_qa_lines
from astra_synth.llm_pipeline.ask import StageReply, Unparseable, parse_reply
from astra_synth.llm_pipeline.codecheck import code_problems
from astra_synth.llm_pipeline.decompose import find_cycle, hop_depths, scenario_type
from astra_synth.llm_pipeline.items import MAX_LINE_CHARS, parse_knowledge_lines
from astra_synth.llm_pipeline.merge import unique_name
from astra_synth.llm_pipeline.outcomes import StageFailure
from astra_synth.llm_pipeline.settings import DEFAULT_ALLOWED_IMPORTS
from astra_synth.llm_pipeline.tool_stage import compatibility_problems
from astra_synth.llm_pipeline.verify import probe_arguments, ungrounded_arguments


def test_published_defaults() -> None:
    settings = PipelineSettings()
    assert settings.quality_threshold == 0.85
    assert (settings.inner_retries, settings.outer_retries, settings.merge_retries) == (5, 15, 20)
    assert settings.max_hops == 20
    with pytest.raises(ValueError, match="quality_threshold"):
        PipelineSettings(quality_threshold=1.5)
    with pytest.raises(ValueError, match="Extra inputs"):
        PipelineSettings.model_validate({"outer_retry": 3})


def test_qa_lines_report_each_bad_line_and_keep_the_rest() -> None:
    text = "\n".join(
        [
            json.dumps({"question": "What is the capital of Freedonia?", "answer": "Fredville"}),
            "",
            "{not json",
            json.dumps(["a", "list"]),
            json.dumps({"question": "Who?", "answer": ""}),
            json.dumps({"question": "Who?", "answer": "Ann", "answr": "typo"}),
            json.dumps({"question": "How many?", "answer": "3", "domain": "maths", "id": "x"}),
            "x" * (MAX_LINE_CHARS + 1),
        ]
    )
    items, errors = parse_qa_lines(text)
    assert [item.question for item in items] == ["What is the capital of Freedonia?", "How many?"]
    assert items[1].domain == "maths"
    assert [e.line for e in errors] == [3, 4, 5, 6, 8]
    messages = [e.message for e in errors]
    assert messages[0].startswith("not JSON")
    assert messages[1] == "expected a JSON object, got list"
    assert "answer: String should have at least 1 character" in messages[2]
    assert "answr: Extra inputs are not permitted" in messages[3]
    assert "longer than" in messages[4]


def test_knowledge_lines() -> None:
    items, errors = parse_knowledge_lines(
        json.dumps({"text": "Kowalski founded Orbis.", "hops": 2})
        + "\n"
        + json.dumps({"text": "x", "hops": 40})
    )
    assert [(i.text, i.hops) for i in items] == [("Kowalski founded Orbis.", 2)]
    assert errors[0].line == 2
    assert "hops" in errors[0].message


class Shape(StageReply):
    value: int


@pytest.mark.parametrize(
    ("text", "value"),
    [('{"value": 3}', 3), ('```json\n{"value": 4}\n```', 4), ('  {"value": 5}\n', 5)],
)
def test_replies_that_parse(text: str, value: int) -> None:
    assert parse_reply(text, Shape).value == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ('Here it is: {"value": 3}', "not JSON"),
        ('{"value": 3} and more', "not JSON"),
        ("[3]", "must be a JSON object, not list"),
        ('{"value": "three"}', "value: Input should be a valid integer"),
        ('{"value": 3, "extra": 1}', "extra: Extra inputs are not permitted"),
        ('{"valu": 3}', "value: Field required"),
    ],
)
def test_replies_that_do_not(text: str, problem: str) -> None:
    with pytest.raises(Unparseable, match=problem):
        parse_reply(text, Shape)


GOOD_CODE = """
import math

TABLE = {"a": 1}

def lookup(key):
    return {"value": math.floor(TABLE[key])}
"""


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (GOOD_CODE, None),
        ("import os\ndef lookup(key):\n    return {}", "import of 'os'"),
        ("from socket import socket\ndef lookup(key):\n    return {}", "import of 'socket'"),
        ("import os.path\ndef lookup(key):\n    return {}", "import of 'os.path'"),
        ("from . import x\ndef lookup(key):\n    return {}", "(relative import)"),
        ("def lookup(key):\n    return __import__('os')", "'__import__' is not allowed"),
        ("def lookup(key):\n    return eval(key)", "'eval' is not allowed"),
        ("def lookup(key):\n    return open(key).read()", "'open' is not allowed"),
        ("def lookup(key):\n    return key.__class__", "dunder attribute '__class__'"),
        ("def other(key):\n    return {}", "no top-level function named 'lookup'"),
        ("def lookup(key:\n", "SyntaxError"),
        ("x = 1\n" * 5000, "characters long"),
    ],
)
def test_static_code_check(code: str, problem: str | None) -> None:
    problems = code_problems(code, "lookup", DEFAULT_ALLOWED_IMPORTS, 20000)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def dag(*edges: tuple[str, list[str]]) -> list[SubQuestion]:
    return [SubQuestion(id=i, question=f"{i}?", answer=i, depends_on=d) for i, d in edges]


@pytest.mark.parametrize(
    ("questions", "expected"),
    [
        (dag(("a", [])), ScenarioType.SINGLE_HOP),
        (dag(("a", []), ("b", []), ("c", [])), ScenarioType.PARALLEL_SINGLE_HOP),
        (dag(("a", []), ("b", ["a"]), ("c", ["b"])), ScenarioType.MULTI_HOP),
        (dag(("a", []), ("b", []), ("c", ["a", "b"])), ScenarioType.PARALLEL_MULTI_HOP),
        (dag(("a", []), ("b", ["a"]), ("c", [])), ScenarioType.PARALLEL_MULTI_HOP),
    ],
)
def test_scenario_types(questions: list[SubQuestion], expected: ScenarioType) -> None:
    assert scenario_type(questions) == expected


def test_cycles_and_depths() -> None:
    assert find_cycle(dag(("a", ["c"]), ("b", ["a"]), ("c", ["b"]))) == ["a", "c", "b", "a"]
    assert find_cycle(dag(("a", []), ("b", ["a"]), ("c", ["a", "b"]))) == []
    assert hop_depths(dag(("a", []), ("b", ["a"]), ("c", ["a", "b"]))) == {"a": 1, "b": 2, "c": 3}
    long_chain = dag(*((f"n{i}", [f"n{i - 1}"] if i else []) for i in range(3000)))
    assert find_cycle(long_chain) == []


def spec(required: list[str], **properties: str) -> ToolSpec:
    return ToolSpec(
        name="lookup",
        description="Look up.",
        parameters={
            "type": "object",
            "properties": {name: {"type": kind} for name, kind in properties.items()},
            "required": required,
        },
    )


def test_backward_compatible_enrichment() -> None:
    base = spec(["city"], city="string")
    assert compatibility_problems(base, spec(["city"], city="string", year="integer")) == []
    assert compatibility_problems(base, spec(["city", "year"], city="string", year="integer"))
    assert compatibility_problems(base, spec([], town="string")) == [
        "parameter 'city' was removed",
        "the required parameters changed (new parameters must be optional)",
    ]
    assert compatibility_problems(base, spec(["city"], city="integer")) == [
        "parameter 'city' changed type"
    ]


def test_grounding_and_probes() -> None:
    context = "What is the population of the capital of Freedonia?\nFredville"
    assert ungrounded_arguments({"city": "Fredville", "year": 1999}, ["city"], context) == []
    assert ungrounded_arguments({"city": "fredville."}, ["city"], context) == []
    assert ungrounded_arguments({"city": "Fred"}, ["city"], context) == ["city='Fred'"]
    assert ungrounded_arguments({"ids": ["Freedonia", "Atlantis"]}, ["ids"], context) == [
        "ids='Atlantis'"
    ]
    assert probe_arguments({"city": "Fredville", "n": 2}, ["n", "city"]) == {
        "city": "zz-unknown-probe-value",
        "n": 2,
    }
    assert probe_arguments({"n": 2}, ["n"]) is None


def test_stage_failures_use_known_names_only() -> None:
    assert StageFailure(STAGES[0], "cyclic_dependencies").reason in REASONS
    with pytest.raises(ValueError, match="unknown stage or reason"):
        StageFailure("decomposed", "something_new")


def test_unique_tool_names() -> None:
    assert unique_name("lookup", set()) == "lookup"
    assert unique_name("lookup", {"lookup", "lookup_2"}) == "lookup_3"
    assert len(unique_name("x" * 64, {"x" * 64})) == 64
