"""The public entry point: ``generate_environments``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from random import Random

from astra_proto import EnvironmentSpec, Provenance, ScenarioType, SubQuestion
from astra_synth.procedural.domains import DOMAINS
from astra_synth.procedural.question_dags import Task, compatible_hops, compose
from astra_synth.procedural.splits import GENERATOR, SPLITS, Partition, split_of
from astra_synth.procedural.tools import build_tools
from astra_synth.procedural.world import build_world

DEFAULT_HOPS = (1, 2, 3, 4, 5, 6)
MAX_HOPS = 12
MAX_ATTEMPTS = 1000
"""Draws per environment before giving up (a draw fails when a walk dead-ends, an answer
would be ambiguous, or the task's composition belongs to another split)."""


def generate_environments(
    count: int,
    seed: int,
    domains: Sequence[str] | None = None,
    hops: int | Sequence[int] | None = None,
    scenario_types: Sequence[ScenarioType | str] | None = None,
    split: str = "train",
) -> list[EnvironmentSpec]:
    """``count`` distinct procedural environments, the same for the same arguments.

    Environment ``i`` has domain ``domains[i % D]`` and scenario type
    ``scenario_types[(i // D) % S]`` (so every pair occurs once in each ``D * S`` run), and a
    hop count drawn from the values of ``hops`` that suit its scenario type (repeat a value to
    weight it). The first ``n`` environments of a longer run are the ``n`` of a shorter one.
    Without ``scenario_types``, the types that some of the hop counts suit are used (one hop
    suits the single-hop types only, three or more the multi-hop ones). Raises ``ValueError``
    for unknown domains, scenario types or splits, and for a given scenario type that none of
    the hop counts suits (the message names the types that would).
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the splits are {list(SPLITS)}")
    names = list(dict.fromkeys(domains if domains is not None else DOMAINS))
    unknown = [name for name in names if name not in DOMAINS]
    if unknown or not names:
        raise ValueError(f"unknown domains {unknown}; the domains are {list(DOMAINS)}")
    if scenario_types is not None and not scenario_types:
        raise ValueError("scenario_types is empty; leave it None for every scenario type")
    hop_values = _hop_values(hops)
    types = scenario_types_for(hop_values, scenario_types)
    partition: Partition = "heldout" if split == "heldout_entities" else "train"
    specs: list[EnvironmentSpec] = []
    seen: set[str] = set()
    for index in range(count):
        domain = names[index % len(names)]
        scenario = types[(index // len(names)) % len(types)]
        choices = compatible_hops(scenario, hop_values)
        spec = _generate_one(seed, index, domain, scenario, choices, split, partition, seen)
        seen.add(spec.id)
        specs.append(spec)
    return specs


def scenario_types_for(
    hops: Sequence[int], scenario_types: Sequence[ScenarioType | str] | None
) -> list[ScenarioType]:
    """The scenario types a run draws from: the given ones, else every type that some of
    ``hops`` suits. ``ValueError`` naming the types to choose from when a given type suits
    none of the hop counts."""
    suited = [t for t in ScenarioType if compatible_hops(t, hops)]
    types = [ScenarioType(t) for t in dict.fromkeys(scenario_types or suited)]
    unsuited = [t.value for t in types if not compatible_hops(t, hops)]
    if unsuited:
        raise ValueError(
            f"no hop count in {list(hops)} suits scenario type(s) {unsuited}; with these hops "
            f"choose among {[t.value for t in suited]}, or give no scenario types"
        )
    return types


def _hop_values(hops: int | Sequence[int] | None) -> list[int]:
    values = list(DEFAULT_HOPS if hops is None else [hops] if isinstance(hops, int) else hops)
    if not values or any(not isinstance(h, int) or not 1 <= h <= MAX_HOPS for h in values):
        raise ValueError(f"hops must be whole numbers from 1 to {MAX_HOPS}, got {hops!r}")
    return values


def _generate_one(
    seed: int,
    index: int,
    domain: str,
    scenario: ScenarioType,
    hop_choices: list[int],
    split: str,
    partition: Partition,
    seen: set[str],
) -> EnvironmentSpec:
    world = build_world(domain)
    for attempt in range(MAX_ATTEMPTS):
        rng = Random(f"{GENERATOR}|{seed}|{index}|{attempt}|{domain}|{scenario.value}|{split}")
        hops = rng.choice(hop_choices)
        task = compose(world, rng, scenario, hops, partition)
        if task is None:
            continue
        spec = _package(task, domain, rng, partition, seed, split)
        if spec is None or spec.id in seen or split_of(spec, partition) != split:
            continue
        return spec
    raise RuntimeError(
        f"no {scenario.value} environment of {domain} for split {split!r} with hops in "
        f"{sorted(set(hop_choices))} after {MAX_ATTEMPTS} draws"
    )


def _package(
    task: Task, domain: str, rng: Random, partition: Partition, seed: int, split: str
) -> EnvironmentSpec | None:
    ids = [f"q{i + 1}" for i in range(len(task.nodes))]
    calls = [(ids[i], node.step) for i, node in enumerate(task.nodes) if node.step is not None]
    ancestors: dict[str, set[str]] = {}
    for i, node in enumerate(task.nodes):  # nodes come in dependency order
        ancestors[ids[i]] = {ids[d] for d in node.depends_on}
        ancestors[ids[i]].update(*(ancestors[ids[d]] for d in node.depends_on))
    tools = build_tools(build_world(domain), rng, calls, partition, ancestors)
    if tools is None:
        return None
    questions = [
        SubQuestion(
            id=ids[i],
            question=node.question,
            answer=node.answer,
            depends_on=[ids[d] for d in node.depends_on],
            tool_name=node.step.tool if node.step else None,
        )
        for i, node in enumerate(task.nodes)
    ]
    return EnvironmentSpec(
        task=task.text,
        answer=task.answer,
        domain=domain,
        scenario_type=task.scenario,
        split=split,
        sub_questions=questions,
        tools=tools,
        provenance=Provenance(source="procedural", seed=seed, generator=GENERATOR),
    )


def generation_rate(count: int = 200, seed: int = 0, split: str = "train") -> float:
    """Environments generated per second in this process (worlds built beforehand, as a
    long-running worker has them), for benchmarks."""
    for name in DOMAINS:
        build_world(name)
    started = time.perf_counter()
    generate_environments(count, seed, split=split)
    return count / (time.perf_counter() - started)
