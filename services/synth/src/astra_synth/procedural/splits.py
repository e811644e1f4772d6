"""Held-out splits: which entities and which compositions are kept away from training.

Both rules are pure functions of public data (an entity id; a spec), so anyone can check a
split from the specs alone:

- **entities**: an id is held out when ``sha256("astra-procedural/entity:" + id)`` read as a
  number (its first 8 hex digits) is divisible by 8 (~12.5% of the id space). The world is
  built so that links never cross the partition.
- **compositions**: the composition of a spec is the canonical shape of its sub-question DAG,
  each node labelled by its tool (and, for ranking tools, the ``sort_by``/``order`` relation),
  no-tool nodes by ``aggregate``; it is held out when ``sha256("astra-procedural/composition:"
  + domain + ":" + shape)`` (first 8 hex digits) is divisible by 5 (~20%).

``train`` tasks use train entities and train compositions; ``heldout_entities`` tasks use
held-out entities and train compositions; ``heldout_compositions`` tasks use train entities
and held-out compositions.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from astra_proto import EnvironmentSpec

GENERATOR = "astra-procedural/1"
"""Generator name and version; part of every random seed, so a new version is a new world."""
SPLITS = ("train", "heldout_entities", "heldout_compositions")
PARTITIONS = ("train", "heldout")
Partition = Literal["train", "heldout"]


def _bucket(text: str, modulus: int) -> bool:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % modulus == 0


def entity_partition(entity_id: str) -> Partition:
    """``heldout`` for the ids reserved to the ``heldout_entities`` split, else ``train``."""
    return "heldout" if _bucket(f"astra-procedural/entity:{entity_id}", 8) else "train"


def composition_signature(spec: EnvironmentSpec) -> str:
    """The canonical shape of a spec's DAG: isomorphic DAGs with the same labels agree."""
    by_id = {q.id: q for q in spec.sub_questions}
    calls = {c.sub_question_id: c for t in spec.tools for c in t.reference_calls}
    memo: dict[str, str] = {}

    def shape(question_id: str) -> str:
        if question_id not in memo:
            question = by_id[question_id]
            label = question.tool_name or "aggregate"
            call = calls.get(question_id)
            if call is not None and "sort_by" in call.arguments:
                label += f"[{call.arguments['sort_by']},{call.arguments.get('order', 'desc')}]"
            inner = ",".join(sorted(shape(dep) for dep in question.depends_on))
            memo[question_id] = f"{label}({inner})"
        return memo[question_id]

    needed = {dep for q in spec.sub_questions for dep in q.depends_on}
    sinks = sorted(shape(q.id) for q in spec.sub_questions if q.id not in needed)
    return f"{spec.domain}:" + "+".join(sinks)


def is_heldout_composition(signature: str) -> bool:
    """Whether a composition (``composition_signature``) is reserved to its held-out split."""
    return _bucket(f"astra-procedural/composition:{signature}", 5)


def split_of(spec: EnvironmentSpec, partition: Partition) -> str:
    """The split a task belongs in, from its entity partition and its composition."""
    heldout_shape = is_heldout_composition(composition_signature(spec))
    if partition == "heldout":
        return "" if heldout_shape else "heldout_entities"
    return "heldout_compositions" if heldout_shape else "train"
