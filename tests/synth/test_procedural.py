"""The procedural environment source: determinism, DAG shapes, reachability, splits."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astra_proto import EnvironmentSpec, ScenarioType, SubQuestion, SyntheticTool
from astra_proto.answers import output_holds_answer
from astra_synth.procedural import (
    DOMAINS,
    SPLITS,
    composition_signature,
    generate_environments,
    generation_rate,
)
from astra_synth.procedural.answers import holds_answer, normalise
from astra_synth.procedural.question_dags import compatible_hops

PREFIXES = sorted({kind.prefix for domain in DOMAINS.values() for kind in domain.kinds})
ENTITY_ID = re.compile(rf"\b(?:{'|'.join(PREFIXES)})-\d{{5}}\b")
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- independent re-statements of the documented rules ----------------------------------


def heldout_entity(entity_id: str) -> bool:
    """docs/procedural.md: sha256("astra-procedural/entity:" + id), 8 hex digits, % 8 == 0."""
    digest = hashlib.sha256(f"astra-procedural/entity:{entity_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 8 == 0


def heldout_composition(signature: str) -> bool:
    digest = hashlib.sha256(f"astra-procedural/composition:{signature}".encode()).hexdigest()
    return int(digest[:8], 16) % 5 == 0


def topology(spec: EnvironmentSpec) -> ScenarioType:
    """The scenario type from the DAG of tool-needing sub-questions alone."""
    tool_ids = {q.id for q in spec.sub_questions if q.tool_name}
    edges = [(d, q.id) for q in spec.sub_questions if q.id in tool_ids
             for d in q.depends_on if d in tool_ids]  # fmt: skip
    if len(tool_ids) == 1:
        return ScenarioType.SINGLE_HOP
    if not edges:
        return ScenarioType.PARALLEL_SINGLE_HOP
    outs = [d for d, _ in edges]
    ins = [q for _, q in edges]
    path = len(set(outs)) == len(outs) and len(set(ins)) == len(ins)
    if path and len(edges) == len(tool_ids) - 1:
        return ScenarioType.MULTI_HOP
    return ScenarioType.PARALLEL_MULTI_HOP


def load(tool: SyntheticTool) -> Callable[..., Any]:
    """The tool's function, executed in-process (our own generated code: trusted here)."""
    namespace: dict[str, Any] = {}
    exec(compile(tool.code, f"<{tool.spec.name}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[tool.entrypoint]
    return function


def embedded(tool: SyntheticTool) -> dict[str, Any]:
    """The module-level literals of a tool's code (its mock data)."""
    tree = ast.parse(tool.code)
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def scalars(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from scalars(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from scalars(item)
    else:
        yield value


def entity_ids(spec: EnvironmentSpec) -> set[str]:
    found = set(ENTITY_ID.findall(spec.task))
    for tool in spec.tools:
        for value in scalars(embedded(tool)):
            found.update(ENTITY_ID.findall(str(value)))
    return found


def calls_by_question(spec: EnvironmentSpec) -> dict[str | None, Any]:
    return {c.sub_question_id: (t, c) for t in spec.tools for c in t.reference_calls}


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, str, ScenarioType, int, str]:
    scenario = draw(st.sampled_from(list(ScenarioType)))
    hops = {
        ScenarioType.SINGLE_HOP: st.just(1),
        ScenarioType.PARALLEL_SINGLE_HOP: st.sampled_from([1, 2]),
        ScenarioType.MULTI_HOP: st.integers(2, 8),
        ScenarioType.PARALLEL_MULTI_HOP: st.integers(2, 7),
    }[scenario]
    return (
        draw(st.integers(0, 2**32)),
        draw(st.sampled_from(sorted(DOMAINS))),
        scenario,
        draw(hops),
        draw(st.sampled_from(SPLITS)),
    )


def one(seed: int, domain: str, scenario: ScenarioType, hops: int, split: str) -> EnvironmentSpec:
    (spec,) = generate_environments(
        1, seed, domains=[domain], hops=hops, scenario_types=[scenario], split=split
    )
    return spec


# --- determinism ------------------------------------------------------------------------


def test_same_arguments_give_the_same_specs_in_another_process() -> None:
    here = [s.id for s in generate_environments(12, 5)]
    script = (
        "import json; from astra_synth.procedural import generate_environments as g; "
        "print(json.dumps([s.id for s in g(12, 5)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert json.loads(output) == here
    assert [s.id for s in generate_environments(12, 5)] == here


def test_different_seeds_give_different_specs_and_a_run_extends_its_prefix() -> None:
    first = [s.id for s in generate_environments(20, 1)]
    second = [s.id for s in generate_environments(20, 2)]
    assert len(set(first)) == 20
    assert not set(first) & set(second)
    assert [s.id for s in generate_environments(8, 1)] == first[:8]


def test_every_domain_and_scenario_type_is_produced() -> None:
    specs = generate_environments(40, 3)
    assert {s.domain for s in specs} == set(DOMAINS)
    assert {"real_estate", "ecommerce", "healthcare", "travel", "finance"} <= set(DOMAINS)
    assert {s.scenario_type for s in specs} == set(ScenarioType)
    assert {s.hops for s in specs} >= {1, 2, 3, 4, 5}
    for spec in specs:
        assert spec.provenance is not None
        assert spec.provenance.source == "procedural"
        assert spec.provenance.seed == 3
        assert spec.provenance.generator == "astra-procedural/1"


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_long_chains(domain: str) -> None:
    specs = generate_environments(
        3, 0, domains=[domain], hops=[6, 7, 8], scenario_types=["multi_hop"]
    )
    assert sorted(s.hops for s in specs) == sorted(len(s.sub_questions) for s in specs)
    assert all(s.hops >= 6 for s in specs)


@pytest.mark.parametrize("hops", [1, 3, 8])
def test_without_scenario_types_the_ones_that_suit_the_hops_are_drawn(hops: int) -> None:
    specs = generate_environments(8, 0, hops=hops)
    assert [s.hops for s in specs] == [hops] * 8
    drawn = {s.scenario_type for s in specs}
    assert drawn
    assert all(st is not None and compatible_hops(st, [hops]) for st in drawn)


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="domains"):
        generate_environments(1, 0, domains=["astrology"])
    with pytest.raises(ValueError, match="split"):
        generate_environments(1, 0, split="test")
    with pytest.raises(ValueError, match="suits") as refused:
        generate_environments(1, 0, hops=3, scenario_types=["single_hop"])
    suggested = str(refused.value).split("choose among", 1)[1]
    assert "'multi_hop'" in suggested
    assert "'single_hop'" not in suggested
    with pytest.raises(ValueError, match="hops"):
        generate_environments(1, 0, hops=0)
    assert generate_environments(0, 0) == []


# --- every spec, property-tested --------------------------------------------------------


@SLOW
@given(requests())
def test_every_spec_is_sound(request: tuple[int, str, ScenarioType, int, str]) -> None:
    seed, domain, scenario, hops, split = request
    spec = one(seed, domain, scenario, hops, split)
    again = EnvironmentSpec.model_validate(spec.model_dump(mode="json"))
    assert again.id == spec.id
    assert (spec.domain, spec.scenario_type, spec.split) == (domain, scenario, split)
    assert spec.hops == hops
    assert topology(spec) == scenario
    answers = [normalise(q.answer) for q in spec.sub_questions]
    assert all(answers)
    assert len(set(answers)) == len(answers), "sub-answers are distinct"
    assert_tools_are_plain_code(spec)
    assert_reachable(spec)
    assert_answers_unique_in_each_tool(spec)


def assert_tools_are_plain_code(spec: EnvironmentSpec) -> None:
    for tool in spec.tools:
        tree = ast.parse(tool.code)
        banned = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)
        assert not [n for n in ast.walk(tree) if isinstance(n, banned)], tool.spec.name
        assert tool.entrypoint == tool.spec.name
        assert tool.spec.domain == spec.domain
        assert tool.reference_calls
        for call in tool.reference_calls:
            jsonschema.validate(call.arguments, tool.spec.parameters)


def assert_reachable(spec: EnvironmentSpec) -> None:
    """In dependency order, every argument comes from q0's text or a dependency's answer,
    and every dependency's answer is used: the dependencies are exactly right."""
    calls = calls_by_question(spec)
    answers = {q.id: q.answer for q in spec.sub_questions}
    for question in spec.topological_order():
        needed = {normalise(answers[d]) for d in question.depends_on}
        if question.tool_name is None:
            assert len(question.depends_on) >= 2
            assert all(
                normalise(answers[d]) in normalise(question.question) for d in question.depends_on
            )
            continue
        tool, call = calls[question.id]
        assert tool.spec.name == question.tool_name
        assert call.expected_answer == question.answer
        used = set()
        schema = tool.spec.parameters
        for name in schema["required"]:
            value, prop = call.arguments[name], schema["properties"][name]
            if "enum" in prop:
                assert value in prop["enum"]
                if name.endswith("currency"):
                    assert str(value) in spec.task
                continue
            if normalise(value) in needed:
                used.add(normalise(value))
            else:
                assert str(value) in spec.task, (
                    f"{question.id}: {name}={value!r} comes from nowhere"
                )
        assert used == needed, f"{question.id} depends on {question.depends_on} but uses {used}"


def assert_answers_unique_in_each_tool(spec: EnvironmentSpec) -> None:
    """A wrong key (look-alike or other row) never returns a sub-question's answer, and no
    ranking ties. (A key only known downstream of the answer may show it again: the product
    found through a warehouse links back to that warehouse.)"""
    by_id = {q.id: q for q in spec.sub_questions}

    def upstream(question_id: str) -> set[str]:
        found = set(by_id[question_id].depends_on)
        for dep in by_id[question_id].depends_on:
            found |= upstream(dep)
        return found

    for tool in spec.tools:
        function, data = load(tool), embedded(tool)
        key_name = next(iter(tool.spec.parameters["required"]))
        for call in tool.reference_calls:
            later = {
                normalise(other.arguments[key_name])
                for other in tool.reference_calls
                if call.sub_question_id in upstream(str(other.sub_question_id))
            }
            assert call.expected_answer is not None
            output = function(**call.arguments)
            assert holds_answer(output, call.expected_answer)
            assert output_holds_answer(output, call.expected_answer)
            table = data.get("RECORDS") or data.get("GROUPS")
            if table is None:  # convert_currency: computed, nothing to look up
                continue
            own = normalise(call.arguments[key_name])
            for key in table:
                if normalise(key) == own or normalise(key) in later:
                    continue
                wrong = function(**{**call.arguments, key_name: key})
                assert not holds_answer(wrong, call.expected_answer), (tool.spec.name, key)
            if "GROUPS" in data:
                sort_by = call.arguments["sort_by"]
                for rows in data["GROUPS"].values():
                    values = [row[sort_by] for row in rows]
                    assert len(set(values)) == len(values), "a ranking tie"


# --- splits -----------------------------------------------------------------------------


def test_heldout_entities_never_reach_train_tasks() -> None:
    train = generate_environments(40, 11)
    heldout = generate_environments(40, 11, split="heldout_entities")
    composed = generate_environments(20, 11, split="heldout_compositions")
    for spec in [*train, *composed]:
        ids = entity_ids(spec)
        assert ids
        assert not [i for i in ids if heldout_entity(i)], spec.id
    for spec in heldout:
        ids = entity_ids(spec)
        assert ids
        assert all(heldout_entity(i) for i in ids), spec.id


def test_heldout_compositions_never_reach_train_tasks() -> None:
    train = generate_environments(60, 13)
    entities = generate_environments(20, 13, split="heldout_entities")
    composed = generate_environments(60, 13, split="heldout_compositions")
    train_shapes = {composition_signature(s) for s in [*train, *entities]}
    held_shapes = {composition_signature(s) for s in composed}
    assert not [s for s in train_shapes if heldout_composition(s)]
    assert all(heldout_composition(s) for s in held_shapes)
    assert not train_shapes & held_shapes
    assert {s.scenario_type for s in composed} == set(ScenarioType)
    assert {s.split for s in composed} == {"heldout_compositions"}


def test_signature_ignores_branch_order() -> None:
    (spec,) = generate_environments(
        1, 4, domains=["travel"], hops=4, scenario_types=["parallel_multi_hop"]
    )
    questions = list(reversed(spec.sub_questions))
    reordered = spec.model_copy(update={"sub_questions": questions})
    assert composition_signature(reordered) == composition_signature(spec)


def test_generation_rate_is_measurable() -> None:
    assert generation_rate(count=10) > 1


def test_sub_question_records_are_contracts() -> None:
    spec = generate_environments(1, 0)[0]
    assert all(isinstance(q, SubQuestion) for q in spec.sub_questions)
