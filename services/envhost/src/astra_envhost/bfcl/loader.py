"""BFCL v3 multi-turn entries → builtin ``EnvironmentSpec``s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from astra_envhost.bfcl import upstream
from astra_envhost.bfcl.tools import function_doc_to_tool
from astra_proto.environment import BuiltinBackend, EnvironmentSpec, Provenance
from astra_proto.tools import ToolSpec

BACKEND_NAME = "bfcl"
"""``BuiltinBackend.name`` of every BFCL environment."""


def load_bfcl_environments(
    categories: Sequence[str] | None = None, limit: int | None = None
) -> list[EnvironmentSpec]:
    """One builtin ``EnvironmentSpec`` per BFCL multi-turn entry, in BFCL's file order.

    ``categories`` defaults to all four (``upstream.CATEGORIES``); ``limit`` keeps at most that
    many entries *per category* (the first ones). The output is deterministic: the same
    installed ``bfcl-eval`` gives the same specs, and so the same content ids, every run.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    specs: list[EnvironmentSpec] = []
    for category in categories if categories is not None else upstream.CATEGORIES:
        if category not in upstream.CATEGORIES:
            raise ValueError(f"unknown BFCL multi-turn category {category!r}")
        entries = upstream.read_entries(category)
        ground_truth = upstream.read_ground_truth(category)
        for entry in entries[:limit] if limit is not None else entries:
            if entry["id"] not in ground_truth:
                raise ValueError(f"BFCL entry {entry['id']!r} has no ground truth")
            specs.append(_entry_to_spec(category, entry, ground_truth[entry["id"]]))
    return specs


def bfcl_environments(
    categories: Iterable[str] | None = None,
    limit: int | None = None,
    entry_ids: Iterable[str] | None = None,
) -> list[EnvironmentSpec]:
    """What ``astra envs import bfcl`` imports: specs, filtered as a user would ask.

    Categories may be given with or without their ``multi_turn_`` prefix (``base``,
    ``miss_func``, ...); ``entry_ids`` keeps only those BFCL ids (all must exist). Raises
    ``ValueError`` with a readable message for unknown names.
    """
    chosen: list[str] | None = None
    if categories is not None:
        chosen = []
        for name in categories:
            full = name if name.startswith("multi_turn_") else f"multi_turn_{name}"
            if full not in upstream.CATEGORIES:
                known = ", ".join(c.removeprefix("multi_turn_") for c in upstream.CATEGORIES)
                raise ValueError(f"unknown BFCL category {name!r} (known: {known})")
            if full not in chosen:
                chosen.append(full)
    if entry_ids is None:
        return load_bfcl_environments(chosen, limit)
    wanted = list(dict.fromkeys(entry_ids))
    if chosen is None:  # only the categories the ids name (an id is "<category>_<n>")
        named = {entry_id.rsplit("_", 1)[0] for entry_id in wanted}
        chosen = [category for category in upstream.CATEGORIES if category in named]
    by_id = {spec_entry_id(spec): spec for spec in load_bfcl_environments(chosen)}
    missing = [entry_id for entry_id in wanted if entry_id not in by_id]
    if missing:
        raise ValueError(f"unknown BFCL entry ids: {missing}")
    selected = [by_id[entry_id] for entry_id in wanted]
    return selected[:limit] if limit is not None else selected


def spec_entry_id(spec: EnvironmentSpec) -> str:
    """The BFCL entry id a spec was built from."""
    return str(bfcl_config(spec)["entry_id"])


def bfcl_config(spec: EnvironmentSpec) -> Mapping[str, Any]:
    """The BFCL backend config of a spec; raises ``ValueError`` for any other spec."""
    if spec.builtin is None or spec.builtin.name != BACKEND_NAME:
        raise ValueError(f"environment {spec.id} is not a BFCL environment")
    return spec.builtin.config


def tools_for_turn(spec: EnvironmentSpec, turn: int) -> list[str]:
    """Names of the tools offered on user turn ``turn`` (0-based), in BFCL's order."""
    return available_functions(bfcl_config(spec), turn)


def available_functions(config: Mapping[str, Any], turn: int) -> list[str]:
    """Functions offered on ``turn``: the initial ones, plus every withheld function whose
    turn has come. As in BFCL's inference loop, a function missed "at turn k" is added just
    before turn k is played (with no user request of its own) and stays from then on.
    """
    n_turns = len(config["turns"])
    if not 0 <= turn < n_turns:
        raise ValueError(f"turn {turn} is out of range: the entry has {n_turns} turns")
    names = list(config["functions"])
    for missed_turn, missed in sorted(
        config.get("missed_function", {}).items(), key=lambda item: int(item[0])
    ):
        if int(missed_turn) <= turn:
            names.extend(missed)
    return names


def turn_text(config: Mapping[str, Any], turn: int) -> str:
    """The user message text of ``turn``, as BFCL's function-calling handlers send it.

    A turn's messages are joined by blank lines (every v3 turn has at most one); the empty
    turn that brings withheld functions back gets BFCL's "I have updated some more
    functions..." prompt.
    """
    messages = config["turns"][turn]
    if not messages and str(turn) in config.get("missed_function", {}):
        return upstream.missed_function_prompt()
    return "\n\n".join(str(message["content"]) for message in messages)


def _entry_to_spec(
    category: str, entry: dict[str, Any], ground_truth: list[list[str]]
) -> EnvironmentSpec:
    entry_id = str(entry["id"])
    involved = [str(name) for name in entry["involved_classes"]]
    turns = entry["question"]
    if len(ground_truth) != len(turns):
        raise ValueError(
            f"BFCL entry {entry_id!r}: {len(turns)} turns, {len(ground_truth)} answers"
        )
    missed: dict[str, list[str]] = {
        str(turn): [str(name) for name in names]
        for turn, names in entry.get("missed_function", {}).items()
    }
    withheld = {name for names in missed.values() for name in names}
    tools: dict[str, ToolSpec] = {}
    for class_name in involved:
        for doc in upstream.function_docs(class_name):
            tool = function_doc_to_tool(doc, domain=f"bfcl:{class_name}")
            if tool.name in tools:
                raise ValueError(f"BFCL entry {entry_id!r}: two functions named {tool.name!r}")
            tools[tool.name] = tool
    unknown = withheld - tools.keys()
    if unknown:
        raise ValueError(f"BFCL entry {entry_id!r} withholds unknown functions {sorted(unknown)}")
    initial = [name for name in tools if name not in withheld]
    # Offered tools keep BFCL's order: the initial ones, then withheld ones as they come back.
    ordered = initial + [
        name for _, names in sorted(missed.items(), key=_turn_key) for name in names
    ]
    config: dict[str, Any] = {
        "bfcl_version": upstream.bfcl_version(),
        "entry_id": entry_id,
        "category": category,
        "involved_classes": involved,
        "initial_config": entry.get("initial_config", {}),
        "long_context": "long_context" in category,
        "turns": turns,
        "functions": initial,
        "missed_function": missed,
        "ground_truth": ground_truth,
    }
    texts = [turn_text(config, turn) for turn in range(len(turns))]
    return EnvironmentSpec(
        kind="builtin",
        task=texts[0],
        followup_turns=texts[1:],
        domain="bfcl:" + "+".join(sorted(involved)),
        split=category,
        builtin=BuiltinBackend(name=BACKEND_NAME, config=config),
        builtin_tools=[tools[name] for name in ordered],
        provenance=Provenance(source="bfcl", generator=f"bfcl-eval=={upstream.bfcl_version()}"),
    )


def _turn_key(item: tuple[str, list[str]]) -> int:
    return int(item[0])
