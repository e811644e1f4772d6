"""Tools as code: a ``SyntheticTool`` per tool name of a task, with its slice of the world.

Each tool's source defines one function and embeds, as a literal, only the rows it needs: the
rows its reference calls read, their look-alikes (a near-identical name or a neighbouring id)
and a few unrelated rows. No imports, no shared state: it runs under the sandbox worker as
is. Bad arguments raise ``ValueError`` with a message an agent can act on.

The embedded slice is checked against the answers: a row that a *wrong* call would return
must not hold the answer of a sub-question the tool serves (whole-value, normalised match,
as envhost scores), otherwise the row is left out, or the task refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from random import Random
from string import Template
from typing import Any

from astra_proto import ReferenceCall, SyntheticTool, ToolSpec
from astra_synth.procedural import templates
from astra_synth.procedural.answers import answer_text, holds_answer
from astra_synth.procedural.schema import Kind, Link
from astra_synth.procedural.walks import CONVERT_TOOL, Step
from astra_synth.procedural.world import Entity, World, entity_fields, normalise_key

NOISE_ROWS = 3
"""Unrelated rows (or groups) added to each lookup tool's data besides the look-alikes."""


def build_tools(
    world: World,
    rng: Random,
    calls: Sequence[tuple[str, Step]],
    partition: str,
    ancestors: Mapping[str, set[str]],
) -> list[SyntheticTool] | None:
    """The tools answering ``calls`` ((sub-question id, step), in order); None if some wrong
    call of a tool could not be kept from holding one of its answers.

    ``ancestors`` maps a sub-question to those it depends on, directly or not: a later call
    whose output also shows an earlier answer (the product found through a warehouse links
    back to that warehouse) is no shortcut, since it can only be made once that answer is known.
    """
    by_tool: dict[str, list[tuple[str, Step]]] = {}
    for question_id, step in calls:
        by_tool.setdefault(step.tool, []).append((question_id, step))
    tools = []
    for name, members in by_tool.items():
        steps = [s for _, s in members]
        references = [
            ReferenceCall(
                tool_name=name,
                arguments=dict(s.arguments),
                sub_question_id=q,
                expected_answer=answer_text(s.answer),
            )
            for q, s in members
        ]
        if name == CONVERT_TOOL:
            spec, code = _converter(world)
        else:
            downstream = {
                question: {u for q, s in members if question in ancestors[q] for u in [s.unit]}
                for question, _ in members
            }
            units = _units(world, rng, members, partition, downstream)
            if units is None:
                return None
            spec, code = _writer(world, steps[0], units)
        spec = spec.model_copy(update={"domain": world.domain.name})
        tools.append(
            SyntheticTool(spec=spec, code=code, entrypoint=name, reference_calls=references)
        )
    return tools


def _units(
    world: World,
    rng: Random,
    members: list[tuple[str, Step]],
    partition: str,
    downstream: dict[str, set[str]],
) -> dict[str, Any] | None:
    """What each call of a lookup tool may return, by unit (an entity or parent id)."""
    steps = [s for _, s in members]
    step = steps[0]
    references = list(dict.fromkeys(s.unit for s in steps))
    candidates = list(references)
    for unit in references:
        candidates += [t for t in world.lookalikes.get(unit, ()) if t not in candidates]
    unit_kind = world.entities[step.unit].kind
    others = [i for i in world.ids[(unit_kind, partition)] if i not in candidates]
    candidates += rng.sample(others, min(NOISE_ROWS, len(others)))
    outputs: dict[str, Any] = {}
    for unit in candidates:
        entity = world.entities[unit]
        assert entity.partition == partition
        output = _unit_output(world, step, entity)
        if output is not None:
            outputs[unit] = output
    for question, served in members:
        answer = answer_text(served.answer)
        for unit in list(outputs):
            if unit == served.unit or unit in downstream[question]:
                continue
            if holds_answer(outputs[unit], answer):
                if unit in references:
                    return None
                del outputs[unit]
    return outputs


def _unit_output(world: World, step: Step, entity: Entity) -> Any:
    if step.op == "find" and entity.key is None:
        return None
    if step.op in ("find", "get"):
        return dict(entity.fields)
    kind, link = _ranked(world, step)
    children = world.group(kind.name, link.field, entity.id)
    if not children:
        return None
    summaries = [entity_fields(world.entities[c], kind.summary_fields()) for c in children]
    return {link.field: entity.id, "total": len(summaries), "results": summaries}


def _ranked(world: World, step: Step) -> tuple[Kind, Link]:
    kind = world.domain.kind(step.kind)
    link = next(link for link in kind.links if link.rank_tool == step.tool)
    return kind, link


def _writer(world: World, step: Step, units: dict[str, Any]) -> tuple[ToolSpec, str]:
    kind = world.domain.kind(step.kind)
    if step.op == "rank":
        return _ranker(world, step, units)
    fields = tuple(next(iter(units.values())).keys())
    select = {
        "type": "array",
        "items": {"type": "string", "enum": list(fields)},
        "description": "Optional: return only these fields (default: every field).",
    }
    if step.op == "find":
        assert kind.key is not None
        records = {normalise_key(str(r[kind.key.field])): r for r in units.values()}
        param = kind.key.field
        description = (
            f"Find the {kind.label} whose {kind.key.phrase} is exactly the given "
            f"value (case and spacing are ignored) and return its record."
        )
        schema = {"type": "string", "description": f"The {kind.label}'s {kind.key.phrase}."}
        source = templates.FIND
    else:
        records = dict(units)
        param = kind.id_field
        description = f"Get one {kind.label} record by its id."
        schema = {"type": "string", "description": f"Id of the {kind.label} ({kind.prefix}-NNNNN)."}
        source = templates.GET
    code = Template(source).substitute(
        name=step.tool,
        param=param,
        label=kind.label,
        records=_literal(records),
        fields=repr(fields),
        phrase=kind.key.phrase if kind.key else "id",
    )
    parameters = {
        "type": "object",
        "properties": {param: schema, "fields": select},
        "required": [param],
        "additionalProperties": False,
    }
    description += f" Fields: {', '.join(fields)}."
    return ToolSpec(name=step.tool, description=description, parameters=parameters), code


def _ranker(world: World, step: Step, units: dict[str, Any]) -> tuple[ToolSpec, str]:
    kind, link = _ranked(world, step)
    assert link.children is not None
    parent = world.domain.kind(link.target)
    sortable = [a.name for a in kind.attrs if a.ranking]
    noun, rest = link.children
    article = "an" if parent.label[0] in "aeiou" else "a"
    groups = {unit: output["results"] for unit, output in units.items()}
    code = Template(templates.RANK).substitute(
        name=step.tool,
        param=link.field,
        label=parent.label,
        groups=_literal(groups),
        sortable=repr(tuple(sortable)),
    )
    description = (
        f"List the {noun}s {rest.format(np=f'{article} {parent.label}')}, sorted by one field. "
        f"Each result holds: {', '.join(kind.summary_fields())}."
    )
    parameters = {
        "type": "object",
        "properties": {
            link.field: {"type": "string", "description": f"Id of the {parent.label}."},
            "sort_by": {"type": "string", "enum": sortable, "description": "Field to sort by."},
            "order": {
                "type": "string",
                "enum": ["asc", "desc"],
                "default": "desc",
                "description": "Sort order (default: descending).",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 50,
                "default": 5,
                "description": "How many results to return at most (default 5).",
            },
        },
        "required": [link.field, "sort_by"],
        "additionalProperties": False,
    }
    return ToolSpec(name=step.tool, description=description, parameters=parameters), code


def _converter(world: World) -> tuple[ToolSpec, str]:
    codes = sorted(world.rates)
    code = Template(templates.CONVERT).substitute(rates=_literal(world.rates))
    currency = {"type": "string", "enum": codes}
    parameters = {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "minimum": 0, "description": "The amount to convert."},
            "from_currency": {**currency, "description": "ISO code of the amount's currency."},
            "to_currency": {**currency, "description": "ISO code of the wanted currency."},
        },
        "required": ["amount", "from_currency", "to_currency"],
        "additionalProperties": False,
    }
    description = "Convert an amount of money between currencies at today's exchange rate."
    return ToolSpec(name=CONVERT_TOOL, description=description, parameters=parameters), code


def _literal(mapping: dict[str, Any]) -> str:
    """A dict as Python source, one entry a line (``repr`` round-trips every float exactly)."""
    lines = "".join(f"    {key!r}: {value!r},\n" for key, value in mapping.items())
    return "{\n" + lines + "}"
