"""Question DAGs: walks composed into a sub-question DAG of a scenario type, with q0 and a0.

Shapes by scenario type (``hops`` is the DAG's longest dependency chain, an aggregation
leaf included, as ``EnvironmentSpec.hops`` counts it):

- ``single_hop``: one call (hops 1).
- ``parallel_single_hop``: 2-3 independent calls (hops 1), or two mirrored calls and a
  no-tool leaf comparing or summing their answers (hops 2).
- ``multi_hop``: one chain of ``hops`` calls, each using the previous answer.
- ``parallel_multi_hop``: two or three chains (one of them ``hops`` long), or a shared prefix
  forking into two chains, or two mirrored chains of ``hops - 1`` joined by an aggregation leaf.

The scenario type is the topology of the tool-needing sub-questions (``classify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

from astra_proto import ScenarioType
from astra_synth.procedural.answers import answer_text, normalise
from astra_synth.procedural.walks import Step, Walker
from astra_synth.procedural.world import World


@dataclass(frozen=True)
class Node:
    """A sub-question: a tool step, or (``step`` None) a no-tool aggregation leaf."""

    step: Step | None
    depends_on: tuple[int, ...]
    question: str
    answer: str


@dataclass(frozen=True)
class Task:
    """A composed task: q0, a0 and the sub-question DAG (nodes in dependency order)."""

    scenario: ScenarioType
    text: str
    answer: str
    nodes: list[Node]


def compatible_hops(scenario: ScenarioType, hops: Sequence[int]) -> list[int]:
    """The hop counts (from ``hops``) a task of ``scenario`` can have."""
    if scenario == ScenarioType.SINGLE_HOP:
        return [h for h in hops if h == 1]
    if scenario == ScenarioType.PARALLEL_SINGLE_HOP:
        return [h for h in hops if h in (1, 2)]
    return [h for h in hops if h >= 2]


def classify(depends_on: Sequence[Sequence[int]], needs_tool: Sequence[bool]) -> ScenarioType:
    """The scenario type of a DAG: the topology of its tool-needing nodes."""
    tool_nodes = [i for i, tool in enumerate(needs_tool) if tool]
    edges = [(d, i) for i in tool_nodes for d in depends_on[i] if needs_tool[d]]
    if len(tool_nodes) == 1:
        return ScenarioType.SINGLE_HOP
    if not edges:
        return ScenarioType.PARALLEL_SINGLE_HOP
    sources = {d for d, _ in edges}
    targets = [i for _, i in edges]
    is_chain = (
        len(edges) == len(tool_nodes) - 1
        and len(sources) == len(edges)
        and len(set(targets)) == len(targets)
    )
    return ScenarioType.MULTI_HOP if is_chain else ScenarioType.PARALLEL_MULTI_HOP


def compose(
    world: World, rng: Random, scenario: ScenarioType, hops: int, partition: str
) -> Task | None:
    """A random task of ``scenario`` with ``hops`` hops, or None (draw again)."""
    builder = _Builder(world, rng, partition)
    if scenario in (ScenarioType.SINGLE_HOP, ScenarioType.MULTI_HOP):
        ok = builder.branches([hops], mirrored=False)
    elif scenario == ScenarioType.PARALLEL_SINGLE_HOP:
        if hops == 2:
            ok = builder.aggregate(1)
        else:
            ok = builder.branches([1] * rng.choice((2, 2, 3)), mirrored=rng.random() < 0.5)
    else:
        shapes = ["fork", "branches"] + (["aggregate"] if hops >= 3 else [])
        shape = rng.choice(shapes)
        if shape == "aggregate":
            ok = builder.aggregate(hops - 1)
        elif shape == "fork":
            prefix = rng.randint(1, hops - 1)
            ok = builder.fork(prefix, hops - prefix, rng.randint(1, hops - prefix))
        else:
            lengths = [hops] + [rng.randint(1, hops) for _ in range(rng.choice((1, 1, 2)))]
            mirrored = rng.random() < 0.35
            ok = builder.branches([hops] * len(lengths) if mirrored else lengths, mirrored)
    if not ok:
        return None
    task = builder.task(scenario)
    return task if _sound(task, scenario, hops) else None


def _sound(task: Task, scenario: ScenarioType, hops: int) -> bool:
    """The task has the requested shape and every sub-answer is distinct."""
    depths: list[int] = []
    for node in task.nodes:
        depths.append(1 + max((depths[d] for d in node.depends_on), default=0))
    shape = classify([n.depends_on for n in task.nodes], [n.step is not None for n in task.nodes])
    answers = [normalise(n.answer) for n in task.nodes]
    return (
        max(depths) == hops
        and shape == scenario
        and all(answers)
        and len(set(answers)) == len(answers)
    )


class _Builder:
    """Collects the walks of one task and writes its texts."""

    def __init__(self, world: World, rng: Random, partition: str) -> None:
        self.world, self.rng, self.partition = world, rng, partition
        self.nodes: list[Node] = []
        self.taken: set[str] = set()
        self.calls: set[str] = set()
        self.questions: list[str] = []
        self.finals: list[str] = []
        self.text = ""
        self.answer = ""
        self._end_index: list[int] = []
        self._starts: list[str] = []

    def branches(self, lengths: list[int], mirrored: bool, numeric: bool = False) -> bool:
        """Independent chains of these lengths (``mirrored``: the same tools from each start)."""
        walker = Walker(self.world, self.rng, numeric_final=numeric)
        first: list[Step] | None = None
        kind: str | None = None
        via: str | None = None
        for length in lengths:
            if mirrored and first is not None:
                cursor = walker.start(self.partition, self.taken, kind, via)
            else:
                cursor = walker.start(self.partition, self.taken)
            if cursor is None:
                return False
            if mirrored and first is not None:
                steps = walker.replay(first, cursor, self.taken, self.calls)
            else:
                walked = walker.walk(cursor, length, close=True, taken=self.taken, calls=self.calls)
                steps = walked[0] if walked else None
            if not steps:
                return False
            if first is None:
                first, kind, via = steps, cursor.entity.kind, cursor.via
            self._add(steps, None)
            self.taken.add(cursor.entity.id)
        self.text = " Also, ".join(_lower_first(q, i) for i, q in enumerate(self.questions))
        self.answer = " and ".join(self.finals)
        return True

    def fork(self, prefix: int, left: int, right: int) -> bool:
        """A chain of ``prefix`` calls, then two chains from the entity it reached."""
        walker = Walker(self.world, self.rng)
        cursor = walker.start(self.partition, self.taken)
        if cursor is None:
            return False
        head = walker.walk(cursor, prefix, close=False, taken=self.taken, calls=self.calls)
        if head is None:
            return False
        steps, middle = head
        if middle is None:
            return False
        self.taken.add(cursor.entity.id)
        joint = self._add(steps, None, final=False)
        for length in (left, right):
            walked = walker.walk(middle, length, close=True, taken=self.taken, calls=self.calls)
            if walked is None:
                return False
            self._add([*walked[0]], joint)
        self.text = f"{self.questions[0]} Also, {_lower_first(self.questions[1], 1)}"
        self.answer = " and ".join(self.finals)
        return True

    def aggregate(self, length: int) -> bool:
        """Two mirrored chains whose numeric answers a no-tool leaf compares or sums."""
        if not self.branches([length, length], mirrored=True, numeric=True):
            return False
        (left, a), (right, b) = self._ends
        # Converted amounts are only worth summing: conversion would not change a comparison.
        if left.op == "convert" or (left.money and right.money and self.rng.random() < 0.5):
            total = a + b
            answer = answer_text(round(total, 2) if isinstance(total, float) else total)
            question = f"What is {answer_text(a)} plus {answer_text(b)}?"
            if left.op == "convert":
                self.text = (
                    f"What is the sum of the {left.phrase} of {left.np} and the {right.phrase} "
                    f"of {right.np}, both converted to {left.arguments['to_currency']}?"
                )
            else:
                self.text = f"What is the sum of {left.describe} and {right.describe}?"
        else:
            if a == b:
                return False
            labels = (self._starts[0], self._starts[1])
            answer = labels[0] if a > b else labels[1]
            question = (
                f"Which is higher: {answer_text(a)} (for {labels[0]}) "
                f"or {answer_text(b)} (for {labels[1]})?"
            )
            self.text = (
                f"Which is higher: {left.describe}, or {right.describe}? "
                f"Answer with {labels[0]} or {labels[1]}."
            )
        self.nodes.append(Node(None, tuple(self._end_index), question, answer))
        self.answer = answer
        return True

    @property
    def _ends(self) -> list[tuple[Step, int | float]]:
        ends: list[tuple[Step, int | float]] = []
        for index in self._end_index:
            step = self.nodes[index].step
            assert step is not None
            assert isinstance(step.answer, int | float)
            ends.append((step, step.answer))
        return ends

    def _add(self, steps: list[Step], joint: int | None, final: bool = True) -> int:
        previous = joint
        for step in steps:
            depends = (previous,) if step.uses_previous and previous is not None else ()
            if step.uses_previous and previous is None:
                raise AssertionError("a walk's first step cannot use a previous answer")
            self.nodes.append(Node(step, depends, step.question, answer_text(step.answer)))
            previous = len(self.nodes) - 1
            self.calls.add(step.call_key)
            self.taken.add(step.unit)
        assert previous is not None
        if final:
            self._end_index.append(previous)
            self._starts.append(steps[0].start_label)
            self.questions.append(f"What is {steps[-1].describe}?")
            self.finals.append(self.nodes[previous].answer)
        return previous

    def task(self, scenario: ScenarioType) -> Task:
        return Task(scenario, self.text, self.answer, self.nodes)


def _lower_first(question: str, index: int) -> str:
    return question if index == 0 else question[0].lower() + question[1:]
