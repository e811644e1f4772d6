"""EnvironmentSpec: the content-addressed id, the sub-question DAG and the kind rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from astra_proto import (
    BuiltinBackend,
    EnvironmentSpec,
    Provenance,
    SubQuestion,
    SyntheticTool,
    ToolSpec,
    VerificationCertificate,
)

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def tool(name: str, code: str = "def run(**kw):\n    return {}\n") -> SyntheticTool:
    return SyntheticTool(
        spec=ToolSpec(name=name, description=f"Looks up {name}."), code=code, entrypoint="run"
    )


def q(qid: str, *deps: str, tool_name: str | None = "lookup") -> dict[str, Any]:
    return {
        "id": qid,
        "question": f"What is {qid}?",
        "answer": f"answer-{qid}",
        "depends_on": list(deps),
        "tool_name": tool_name,
    }


def spec(*questions: dict[str, Any], **fields: Any) -> EnvironmentSpec:
    """A synthetic spec with one tool ``lookup`` and the given sub-questions."""
    base: dict[str, Any] = {
        "task": "Which city hosts the headquarters of the company that makes X?",
        "answer": "Paris",
        "domain": "companies",
        "sub_questions": list(questions),
        "tools": [tool("lookup")],
    }
    return EnvironmentSpec.model_validate(base | fields)


def cert(env_id: str) -> VerificationCertificate:
    return VerificationCertificate(
        env_id=env_id, replays=[], passed=True, verifier_version="1", verified_at=T0
    )


def order_ids(environment: EnvironmentSpec) -> list[str]:
    return [question.id for question in environment.topological_order()]


# --- content-addressed id -------------------------------------------------------------------


def test_id_is_computed_when_empty() -> None:
    env = spec(q("a"))
    assert re.fullmatch(r"env_[0-9a-f]{32}", env.id)
    assert env.id == env.content_id()


def test_id_is_stable_across_dumps() -> None:
    env = spec(q("a"), q("b", "a"))
    assert EnvironmentSpec.model_validate_json(env.model_dump_json()).id == env.id
    assert EnvironmentSpec.model_validate(env.model_dump(mode="json")).id == env.id
    assert EnvironmentSpec.model_validate(env.model_dump() | {"id": ""}).id == env.id
    assert spec(q("a"), q("b", "a")).id == env.id  # built twice, same content


def test_id_ignores_provenance_and_certificate() -> None:
    plain = spec(q("a"))
    provenance = Provenance(source="qa", job_id="job-9", seed=3, generator="m", created_at=T0)
    assert spec(q("a"), provenance=provenance).id == plain.id
    assert spec(q("a"), certificate=cert(plain.id)).id == plain.id


@pytest.mark.parametrize(
    "change",
    [
        {"task": "A different question?"},
        {"answer": "Lyon"},
        {"domain": "travel"},
        {"split": "test"},
        {"followup_turns": ["And in 2020?"]},
        {"tools": [tool("lookup", code="def run(**kw):\n    return {'v': 1}\n")]},
        {"tools": [tool("lookup").model_copy(update={"entrypoint": "other"})]},
        {"sub_questions": [q("a") | {"answer": "another"}]},
    ],
)
def test_id_changes_with_content(change: dict[str, Any]) -> None:
    assert spec(q("a"), **change).id != spec(q("a")).id


def test_id_changes_with_a_tool_document() -> None:
    described = tool("lookup")
    described.spec.description = "Looks up a company's headquarters."
    assert spec(q("a"), tools=[described]).id != spec(q("a")).id


def test_wrong_id_is_rejected() -> None:
    env = spec(q("a"))
    with pytest.raises(ValidationError, match="does not match the spec's content hash"):
        spec(q("a"), id="env_" + "0" * 32)
    with pytest.raises(ValidationError, match="does not match"):
        spec(q("a"), task="Edited after registration?", id=env.id)
    assert spec(q("a"), id=env.id).id == env.id


def test_adding_a_defaulted_field_keeps_stored_ids() -> None:
    """A stored spec still validates after a contract gains a field with a default."""

    class NextEnvironmentSpec(EnvironmentSpec):
        difficulty: str | None = None

    stored = spec(q("a")).model_dump(mode="json")
    assert NextEnvironmentSpec.model_validate(stored).id == stored["id"]
    assert (
        NextEnvironmentSpec.model_validate(stored | {"id": "", "difficulty": "hard"}).id
        != (stored["id"])
    )


def test_certificate_must_name_this_spec() -> None:
    env = spec(q("a"))
    assert spec(q("a"), certificate=cert(env.id)).certificate is not None
    with pytest.raises(ValidationError, match=r"certificate\.env_id"):
        spec(q("a"), certificate=cert("env_" + "f" * 32))


# --- the sub-question DAG -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("questions", "error"),
    [
        ([q("a", "missing")], "depends on unknown"),
        ([q("a", "b"), q("b", "a")], "cycle"),
        ([q("a", "a")], "cycle"),
        ([q("a"), q("b", "a", "d"), q("c", "b"), q("d", "c")], "cycle"),
        ([q("a"), q("a")], "unique"),
        ([q("a", tool_name="search")], "unknown tool 'search'"),
        ([q("a", tool_name=None), q("b", "a")], "needs no tool, so it must be a leaf"),
    ],
)
def test_bad_dag_is_rejected(questions: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        spec(*questions)


def test_no_tool_leaf_is_accepted() -> None:
    env = spec(q("a"), q("b"), q("final", "a", "b", tool_name=None))
    assert env.sub_questions[-1].tool_name is None
    assert spec(q("only", tool_name=None), tools=[]).hops == 1


def test_sub_question_fields_are_checked() -> None:
    with pytest.raises(ValidationError, match="id"):
        SubQuestion(id="has space", question="q", answer="a")
    with pytest.raises(ValidationError, match="question"):
        SubQuestion(id="a", question="", answer="a")


@pytest.mark.parametrize(
    ("questions", "hops"),
    [
        ([], 0),
        ([q("a")], 1),
        ([q("a"), q("b"), q("c")], 1),  # parallel single-hop
        ([q("c", "b"), q("b", "a"), q("a")], 3),  # chain, listed backwards
        ([q("a"), q("b", "a"), q("c", "a"), q("d", "b", "c")], 3),  # diamond
        ([q("a"), q("b", "a"), q("x"), q("y", "x"), q("z", "y"), q("f", "b", "z")], 4),
    ],
)
def test_hops(questions: list[dict[str, Any]], hops: int) -> None:
    assert spec(*questions).hops == hops


def test_topological_order_puts_dependencies_first() -> None:
    env = spec(q("d", "b", "c"), q("c", "a"), q("b", "a"), q("a"))
    order = order_ids(env)
    assert sorted(order) == ["a", "b", "c", "d"]
    for question in env.sub_questions:
        assert all(order.index(dep) < order.index(question.id) for dep in question.depends_on)


def test_long_chain_validates_without_recursion() -> None:
    length = 5000  # far past Python's recursion limit
    chain = [q(f"q{i}", f"q{i - 1}") if i else q("q0") for i in range(length)]
    env = spec(*reversed(chain))
    assert env.hops == length
    assert order_ids(env) == [f"q{i}" for i in range(length)]
    looped = [q("q0", f"q{length - 1}"), *chain[1:]]
    with pytest.raises(ValidationError, match="cycle"):
        spec(*reversed(looped))


@st.composite
def random_dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Sub-questions whose dependencies point to lower indexes, listed in a shuffled order."""
    size = draw(st.integers(min_value=1, max_value=12))
    questions = []
    for i in range(size):
        deps = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        questions.append(q(f"n{i}", *(f"n{d}" for d in sorted(deps))))
    return draw(st.permutations(questions))


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(random_dags())
def test_topological_order_of_any_dag(questions: list[dict[str, Any]]) -> None:
    env = spec(*questions)
    order = order_ids(env)
    assert sorted(order) == sorted(question["id"] for question in questions)
    position = {qid: i for i, qid in enumerate(order)}
    longest: dict[str, int] = {}
    for question in env.topological_order():
        assert all(position[dep] < position[question.id] for dep in question.depends_on)
        longest[question.id] = 1 + max((longest[d] for d in question.depends_on), default=0)
    assert env.hops == max(longest.values())


# --- kinds and tools ------------------------------------------------------------------------


def builtin_fields(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "builtin",
        "builtin": BuiltinBackend(name="bfcl", config={"case": "multi_turn_base_0"}),
        "builtin_tools": [ToolSpec(name="cd", description="Change directory.")],
        "tools": [],
    } | overrides


def test_builtin_environment() -> None:
    env = spec(q("a", tool_name="cd"), **builtin_fields())
    assert env.kind == "builtin"
    assert env.tool_names() == ["cd"]
    assert [t.name for t in env.tool_specs()] == ["cd"]


@pytest.mark.parametrize(
    "fields",
    [
        builtin_fields(builtin=None),
        builtin_fields(tools=[tool("lookup")]),
    ],
)
def test_builtin_kind_rules(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="builtin environments need"):
        spec(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"builtin": BuiltinBackend(name="bfcl")},
        {"builtin_tools": [ToolSpec(name="cd", description="Change directory.")]},
    ],
)
def test_synthetic_kind_rules(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="synthetic environments carry no builtin"):
        spec(**fields)


def test_tool_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="tool names must be unique"):
        spec(tools=[tool("lookup"), tool("lookup", code="def run():\n    return 1\n")])
    twice = [ToolSpec(name="cd", description="Change directory.")] * 2
    with pytest.raises(ValidationError, match="tool names must be unique"):
        spec(**builtin_fields(builtin_tools=twice))


def test_synthetic_tool_specs() -> None:
    env = spec(q("a"), tools=[tool("lookup"), tool("convert")])
    assert env.tool_names() == ["lookup", "convert"]
    assert [t.name for t in env.tool_specs()] == ["lookup", "convert"]


def test_task_and_domain_are_required() -> None:
    with pytest.raises(ValidationError, match="task"):
        spec(task="")
    with pytest.raises(ValidationError, match="domain"):
        spec(domain="")
