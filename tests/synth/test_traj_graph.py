"""Tool-call graph and walks: weights from LLM chains and schema links, walk lengths,
acyclicity, edges followed, weights respected in distribution, argument dependencies."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from astra_proto import ToolSpec
from astra_proto.api.synth import Edge, ToolGraph, ToolServer
from astra_synth.trajectories.graph import build_graph, feeds, schema_edges
from astra_synth.trajectories.models import Chain, ChainProposal
from astra_synth.trajectories.walks import random_walk, sample_chains, unbound_arguments


def spec(name: str, params: dict[str, Any], output: dict[str, Any] | None = None) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=f"The {name} tool of the weather server.",
        parameters={"type": "object", "properties": params, "required": list(params)},
        output_schema={"type": "object", "properties": output} if output else None,
    )


S = {"type": "string"}
ALERT = {"type": "object", "properties": {"alert_id": S}}
WEATHER = ToolServer(
    name="weather",
    source="json",
    tools=[
        spec("find_city", {"name": S}, {"city_id": S, "country": S}),
        spec("get_forecast", {"city_id": S, "days": {"type": "integer"}}, {"temperature": S}),
        spec("get_alerts", {"city_id": S}, {"alerts": {"type": "array", "items": ALERT}}),
        spec("get_alert", {"alert_id": S}, {"text": S}),
    ],
)


def test_schema_links_and_llm_transitions_weight_the_graph() -> None:
    assert feeds(WEATHER.tool("find_city"), WEATHER.tool("get_forecast")) == ["city_id"]
    assert feeds(WEATHER.tool("get_alerts"), WEATHER.tool("get_alert")) == ["alert_id"]
    assert set(schema_edges(WEATHER)) == {
        ("find_city", "get_forecast"), ("find_city", "get_alerts"), ("get_alerts", "get_alert")
    }  # fmt: skip
    proposals = [
        ChainProposal(task="t1", chain=["find_city", "get_forecast"]),
        ChainProposal(task="t2", chain=["find_city", "get_forecast", "get_alerts"]),
        ChainProposal(task="t3", chain=["find_city", "get_alerts", "get_alert"]),
    ]
    graph = build_graph(WEATHER, proposals)
    edges = {(e.source, e.target): (e.weight, e.from_llm, e.from_schema) for e in graph.edges}
    assert edges == {
        ("find_city", "get_forecast"): (3, 2, 1),
        ("find_city", "get_alerts"): (2, 1, 1),
        ("get_alerts", "get_alert"): (2, 1, 1),
        ("get_forecast", "get_alerts"): (1, 1, 0),
    }
    assert ToolGraph.model_validate_json(graph.model_dump_json()) == graph  # readable as JSON


def test_argument_dependencies() -> None:
    fine = Chain(server="weather", tools=["find_city", "get_forecast"])
    assert unbound_arguments(fine, WEATHER) == []
    # an id no earlier output provides
    assert unbound_arguments(
        Chain(server="weather", tools=["find_city", "get_alert"]), WEATHER
    ) == ["get_alert.alert_id"]
    # the first call takes its arguments from the task
    assert unbound_arguments(Chain(server="weather", tools=["get_alert"]), WEATHER) == []


@st.composite
def graphs(draw: st.DrawFn) -> ToolGraph:
    n = draw(st.integers(min_value=1, max_value=7))
    nodes = [f"t{i}" for i in range(n)]
    pairs = [(a, b) for a in nodes for b in nodes if a != b]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    edges = [Edge(source=a, target=b, weight=draw(st.integers(1, 9))) for a, b in chosen]
    return ToolGraph(server="s", nodes=nodes, edges=edges)


@settings(max_examples=150, deadline=None)
@given(
    graph=graphs(),
    bounds=st.tuples(st.integers(1, 5), st.integers(0, 3)),
    acyclic=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_walks_are_bounded_follow_edges_and_respect_acyclicity(
    graph: ToolGraph, bounds: tuple[int, int], acyclic: bool, seed: int
) -> None:
    low, extra = bounds
    high = low + extra
    edges = {(e.source, e.target) for e in graph.edges}
    rng = random.Random(seed)
    for _ in range(10):
        walk = random_walk(graph, rng, min_length=low, max_length=high, acyclic=acyclic)
        if walk is None:
            continue
        assert low <= len(walk) <= high
        assert all(pair in edges for pair in itertools.pairwise(walk))
        if acyclic:
            assert len(set(walk)) == len(walk)
    chains = sample_chains(graph, 5, seed=seed, min_length=low, max_length=high, acyclic=acyclic)
    assert len({tuple(c.tools) for c in chains}) == len(chains) <= 5


def test_walk_steps_follow_edge_weights_in_distribution() -> None:
    graph = ToolGraph(
        server="s",
        nodes=["a", "b", "c"],
        edges=[Edge(source="a", target="b", weight=1), Edge(source="a", target="c", weight=3)],
    )
    rng = random.Random(7)
    counts = Counter(
        tuple(w)
        for w in (random_walk(graph, rng, min_length=2, max_length=2) for _ in range(4000))
        if w
    )
    assert set(counts) == {("a", "b"), ("a", "c")}
    share = counts[("a", "c")] / sum(counts.values())
    assert 0.72 < share < 0.78  # weight 3 of 4; seeded, so the figure is fixed


def test_acyclic_walks_stop_at_a_cycle_and_cyclic_ones_may_revisit() -> None:
    graph = ToolGraph(
        server="s",
        nodes=["a", "b"],
        edges=[Edge(source="a", target="b", weight=1), Edge(source="b", target="a", weight=1)],
    )
    rng = random.Random(1)
    acyclic = [random_walk(graph, rng, min_length=2, max_length=5) for _ in range(50)]
    assert all(w is not None and len(w) == 2 for w in acyclic)
    cyclic = [random_walk(graph, rng, min_length=3, max_length=5, acyclic=False) for _ in range(50)]
    assert all(w is not None and len(w) >= 3 for w in cyclic)
    assert all(random_walk(graph, rng, min_length=3, max_length=5) is None for _ in range(20))
