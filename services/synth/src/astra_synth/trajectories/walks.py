"""Candidate chains: length-bounded, weight-biased random walks on a tool-call graph, and the
argument-dependency check every chain must pass."""

from __future__ import annotations

import random

from astra_proto.api.synth import ToolGraph, ToolServer
from astra_synth.trajectories.graph import feeds, is_identifier
from astra_synth.trajectories.models import Chain


def random_walk(
    graph: ToolGraph,
    rng: random.Random,
    *,
    min_length: int = 2,
    max_length: int = 5,
    acyclic: bool = True,
) -> list[str] | None:
    """One walk: a start tool drawn by out-weight, then successors drawn by edge weight,
    until a length drawn uniformly from [min_length, max_length] or a dead end. Returns None
    when the walk ends shorter than ``min_length``. ``acyclic`` walks never revisit a tool."""
    if min_length < 1 or min_length > max_length:
        raise ValueError("need 1 <= min_length <= max_length")
    out_weight = {n: sum(e.weight for e in graph.successors(n)) for n in graph.nodes}
    starts = [n for n in graph.nodes if out_weight[n] > 0]
    if not starts:  # no edges: only one-tool walks exist
        if min_length > 1 or not graph.nodes:
            return None
        return [rng.choice(graph.nodes)]
    target = rng.randint(min_length, max_length)
    walk = [rng.choices(starts, weights=[out_weight[n] for n in starts])[0]]
    while len(walk) < target:
        options = [e for e in graph.successors(walk[-1]) if not (acyclic and e.target in walk)]
        if not options:
            break
        walk.append(
            rng.choices([e.target for e in options], weights=[e.weight for e in options])[0]
        )
    return walk if len(walk) >= min_length else None


def sample_chains(
    graph: ToolGraph,
    count: int,
    *,
    seed: int = 0,
    min_length: int = 2,
    max_length: int = 5,
    acyclic: bool = True,
) -> list[Chain]:
    """Up to ``count`` distinct chains from walks (at most ``20 * count`` attempts)."""
    rng = random.Random(f"{seed}:{graph.server}")
    found: dict[tuple[str, ...], Chain] = {}
    for _ in range(20 * count):
        if len(found) >= count:
            break
        walk = random_walk(
            graph, rng, min_length=min_length, max_length=max_length, acyclic=acyclic
        )
        if walk is not None:
            found.setdefault(tuple(walk), Chain(server=graph.server, tools=walk))
    return list(found.values())


def unbound_arguments(chain: Chain, server: ToolServer) -> list[str]:
    """Required arguments that neither the task nor an earlier output can supply, as
    ``tool.param``; empty when the chain passes.

    The task supplies every argument of the first call and any non-identifier argument (a
    name, a date, an amount); an identifier argument (``id``, ``<entity>_id``) of a later call
    must come from the output of an earlier call in the chain (``graph.feeds``).
    """
    missing = []
    for index, name in enumerate(chain.tools):
        tool = server.tool(name)
        for param in tool.parameters.get("required", []):
            if index == 0 or not is_identifier(param):
                continue
            earlier = [server.tool(n) for n in chain.tools[:index]]
            if not any(param in feeds(source, tool) for source in earlier):
                missing.append(f"{name}.{param}")
    return missing
