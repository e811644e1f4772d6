"""Walks over the world: chains of tool calls, each answering one sub-question.

A walk starts at an entity the question names (by its key, or by its id for id-only kinds)
and takes one step per hop: a lookup answering a link (the next entity's id), a ranked list
of children answering the top child's id, or, at the end, a field of the last entity (or a
currency conversion of a money field). Every step reads a new entity, and never one whose
fields an earlier output already showed, so no hop is there for show.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from random import Random

from astra_synth.procedural.answers import answer_text
from astra_synth.procedural.schema import Value
from astra_synth.procedural.world import Entity, World

CONVERT_TOOL = "convert_currency"
ID_START_SHARE = 0.3
"""Share of walks from a keyed kind that start from the entity's id (a booking reference,
an order number) rather than its name."""
FLAT_START_SHARE = 0.5
"""Share of free starts drawn uniformly over first calls rather than over entity kinds."""
SEARCH_BUDGET = 300
"""Steps a walk may try before it gives up (the caller then draws a new start)."""


@dataclass(frozen=True)
class Step:
    """One tool call answering one sub-question."""

    op: str
    """``find`` (by key), ``get`` (by id), ``rank`` (children of an id) or ``convert``."""
    tool: str
    kind: str
    """Kind of the entity records the tool serves (for ``rank``, the child kind)."""
    unit: str
    """Which slice of the tool's data the call reads: an entity id, a parent id, or ""."""
    field: str
    answer: Value
    arguments: dict[str, Value]
    uses_previous: bool
    """Whether an argument is the previous step's answer."""
    question: str
    np: str
    """The subject of the answer as the task text names it."""
    phrase: str
    money: bool = False
    start_label: str = ""
    """On a walk's first step: how the task text names the start entity."""

    @property
    def call_key(self) -> str:
        return self.tool + json.dumps(self.arguments, sort_keys=True)

    @property
    def describe(self) -> str:
        """The answer as a noun phrase of the task text ("the price of the listing at ...")."""
        if self.op == "convert":
            return f"the {self.phrase} of {self.np}, converted to {self.arguments['to_currency']}"
        return f"the {self.phrase} of {self.np}"

    def entry(self) -> tuple[str, object, object]:
        """The call's tool and ordering: what a flat start draws."""
        return (self.tool, self.arguments.get("sort_by"), self.arguments.get("order"))

    def shape(self) -> tuple[str, str, str, object, object]:
        """What a mirrored walk repeats: the tool, the answered field and the ordering."""
        sort = (self.arguments.get("sort_by"), self.arguments.get("order"))
        return (self.op, self.tool, self.field, *sort)


@dataclass(frozen=True)
class Cursor:
    """Where a walk stands: an entity and how its identity is known."""

    entity: Entity
    via: str
    """``key`` (named in the text), ``text`` (id in the text) or ``answer`` (a step's answer)."""
    np: str
    summary_only: bool = False
    """Reached by a ranked list, whose summary already showed some of its fields."""
    must_rank: bool = False
    """Reached by a lookup answering its own id: only listing its children is a new hop."""
    first: tuple[str, object, object] | None = None
    """A start whose first step must be this (tool, sort_by, order)."""


@dataclass
class Walker:
    """Walks one world with one random stream."""

    world: World
    rng: Random
    numeric_final: bool = False
    budget: int = field(default=SEARCH_BUDGET)

    def start(
        self, partition: str, taken: set[str], kind: str | None = None, via: str | None = None
    ) -> Cursor | None:
        """A random entity to start from, named as a question would name it.

        Free starts (no ``kind``) are half the time drawn so that each possible first call
        (tool and ordering) is equally likely, whatever the kind it belongs to: rare tools
        then appear early in a run, and every held-out composition can be reached.
        """
        first = None
        if kind is None and self.rng.random() < FLAT_START_SHARE:
            kind, via, tool, sort_by, order = self.rng.choice(_entries(self.world))
            first = (tool, sort_by, order)
        name = kind or self.rng.choice([k.name for k in self.world.domain.kinds])
        free = [i for i in self.world.ids.get((name, partition), ()) if i not in taken]
        if not free:
            return None
        entity = self.world.entities[self.rng.choice(free)]
        spec = self.world.kind(entity)
        if via is None:
            via = "text" if spec.key is None or self.rng.random() < ID_START_SHARE else "key"
        if via == "key" and spec.key is not None and entity.key is not None:
            return Cursor(entity, "key", spec.key.refer.format(key=entity.key), first=first)
        return Cursor(entity, "text", f"{spec.label} {entity.id}", first=first)

    def walk(
        self, cursor: Cursor, hops: int, *, close: bool, taken: set[str], calls: set[str]
    ) -> tuple[list[Step], Cursor | None] | None:
        """``hops`` steps from ``cursor``: ending in a final answer (``close``), or at an
        entity to walk on from; None when no such walk was found within the budget."""
        self.budget = SEARCH_BUDGET
        found = self._extend(cursor, hops, close, {*taken, cursor.entity.id}, set(calls))
        if found is None:
            return None
        steps, end = found
        return [replace(steps[0], start_label=_label(cursor)), *steps[1:]], end

    def replay(
        self, template: list[Step], cursor: Cursor, taken: set[str], calls: set[str]
    ) -> list[Step] | None:
        """The walk of ``template`` (same tools, fields and orderings) from another start."""
        steps: list[Step] = []
        seen = {*taken, cursor.entity.id}
        current: Cursor | None = cursor
        for index, wanted in enumerate(template):
            if wanted.op == "convert":
                steps.append(self._convert(steps[-1], str(wanted.arguments["to_currency"])))
                continue
            if current is None:
                return None
            final = index == len(template) - 1 or template[index + 1].op == "convert"
            options = self._moves(current, final=final, taken=seen, calls=calls)
            match = next(((s, c) for s, c in options if s.shape() == wanted.shape()), None)
            if match is None:
                return None
            steps.append(match[0])
            current = match[1]
            if current is not None:
                seen.add(current.entity.id)
        if any(s.call_key in calls for s in steps):
            return None
        return [replace(steps[0], start_label=_label(cursor)), *steps[1:]]

    def _extend(
        self, cursor: Cursor, remaining: int, close: bool, taken: set[str], calls: set[str]
    ) -> tuple[list[Step], Cursor | None] | None:
        final = close and remaining == 1
        options = self._moves(cursor, final=final, taken=taken, calls=calls)
        if close and remaining == 2:
            options += [(s, None) for s, _ in self._moves(cursor, True, taken, calls) if s.money]
        if cursor.first is not None:
            options = [(s, c) for s, c in options if s.entry() == cursor.first]
        for step, after in self._shuffled(options):
            self.budget -= 1
            if self.budget < 0:
                return None
            if final:
                return [step], None
            if after is None:  # a money answer, converted by the last hop
                convert = self._convert(step, self.rng.choice(self._currencies()))
                return [step, convert], None
            if remaining == 1:
                return [step], after
            rest = self._extend(
                after, remaining - 1, close, taken | {after.entity.id}, calls | {step.call_key}
            )
            if rest is not None:
                return [step, *rest[0]], rest[1]
        return None

    def _shuffled(
        self, options: list[tuple[Step, Cursor | None]]
    ) -> list[tuple[Step, Cursor | None]]:
        """Options in random order, the kinds of step interleaved so each is tried early."""
        buckets: dict[str, list[tuple[Step, Cursor | None]]] = {}
        for option in options:
            buckets.setdefault(option[0].op + str(option[1] is None), []).append(option)
        order = sorted(buckets)
        self.rng.shuffle(order)
        for name in order:
            self.rng.shuffle(buckets[name])
        ordered = []
        while any(buckets.values()):
            ordered += [buckets[name].pop() for name in order if buckets[name]]
        return ordered

    def _moves(
        self, cursor: Cursor, final: bool, taken: set[str], calls: set[str]
    ) -> list[tuple[Step, Cursor | None]]:
        found: list[tuple[Step, Cursor | None]] = []
        if cursor.via == "key":
            found += self._lookups(cursor, "find", final, taken)
        elif not cursor.must_rank:
            found += self._lookups(cursor, "get", final, taken)
        if cursor.via != "key":
            found += self._ranks(cursor, final, taken)
        numeric_only = final and self.numeric_final
        return [
            (s, c)
            for s, c in found
            if s.call_key not in calls and (not numeric_only or _numeric(s.answer))
        ]

    def _lookups(
        self, cursor: Cursor, op: str, final: bool, taken: set[str]
    ) -> list[tuple[Step, Cursor | None]]:
        entity = cursor.entity
        kind = self.world.kind(entity)
        if op == "find":
            assert kind.key is not None
            assert kind.find_tool is not None
            tool, arguments = kind.find_tool, {kind.key.field: str(entity.key)}
            subject = cursor.np
        else:
            tool, arguments = kind.get_tool, {kind.id_field: entity.id}
            subject = f"{kind.label} {entity.id}"

        def step(name: str, phrase: str, money: bool = False) -> Step:
            return Step(
                op,
                tool,
                kind.name,
                entity.id,
                name,
                entity.fields[name],
                dict(arguments),
                cursor.via == "answer",
                f"What is the {phrase} of {subject}?",
                cursor.np,
                phrase,
                money,
            )

        found: list[tuple[Step, Cursor | None]] = []
        if final:
            shown = set(kind.summary_fields()) if cursor.summary_only else set()
            if kind.key is not None and op == "get":
                found += [(step(kind.key.field, kind.key.phrase), None)]
            found += [(step(name, phrase), None) for name, phrase in kind.extra_fields]
            found += [(step(a.name, a.phrase, a.money), None) for a in kind.attrs if a.answerable]
            return [(s, c) for s, c in found if s.field not in shown]
        for link in kind.links:
            target = self.world.entities[str(entity.fields[link.field])]
            if target.id not in taken:
                after = Cursor(target, "answer", f"the {link.label} of {cursor.np}")
                found.append((step(link.field, f"{link.label} id"), after))
        if op == "find" and self.world.domain.child_links(kind.name):
            after = Cursor(entity, "answer", cursor.np, must_rank=True)
            found.append((step(kind.id_field, f"{kind.label} id"), after))
        return found

    def _ranks(
        self, cursor: Cursor, final: bool, taken: set[str]
    ) -> list[tuple[Step, Cursor | None]]:
        parent = cursor.entity
        parent_kind = self.world.kind(parent)
        found: list[tuple[Step, Cursor | None]] = []
        for kind, link in self.world.domain.child_links(parent.kind):
            assert link.children is not None
            assert link.rank_tool is not None
            ids = self.world.group(kind.name, link.field, parent.id)
            group = [self.world.entities[i] for i in ids]
            if len(group) < 2:
                continue
            noun, rest = link.children
            local = rest.format(np=f"{parent_kind.label} {parent.id}")
            for attr in kind.attrs:
                for order, superlative in zip(("desc", "asc"), attr.ranking or (), strict=False):
                    values = {e.fields[attr.name]: e for e in group}
                    top = values[max(values) if order == "desc" else min(values)]
                    if top.id in taken:
                        continue
                    arguments: dict[str, Value] = {
                        link.field: parent.id,
                        "sort_by": attr.name,
                        "order": order,
                        "limit": 1,
                    }
                    ranked = f"the {superlative} {noun}"
                    template = Step(
                        "rank",
                        link.rank_tool,
                        kind.name,
                        parent.id,
                        "",
                        "",
                        arguments,
                        cursor.via == "answer",
                        f"{ranked} {local}",
                        f"{ranked} {rest.format(np=cursor.np)}",
                        "",
                    )
                    if not final:
                        after = Cursor(top, "answer", template.np, summary_only=True)
                        found.append(
                            (_answering(template, top, kind.id_field, f"{kind.label} id"), after)
                        )
                        continue
                    if attr.answerable:
                        found.append(
                            (_answering(template, top, attr.name, attr.phrase, attr.money), None)
                        )
                    if kind.key is not None:
                        found.append(
                            (_answering(template, top, kind.key.field, kind.key.phrase), None)
                        )
                    else:
                        found.append(
                            (_answering(template, top, kind.id_field, f"{kind.label} id"), None)
                        )
        return found

    def _currencies(self) -> list[str]:
        return sorted(c for c in self.world.rates if c != "USD")

    def _convert(self, money: Step, currency: str) -> Step:
        amount = money.answer
        assert isinstance(amount, int | float)
        rate = self.world.rates[currency] / self.world.rates["USD"]
        converted = round(amount * rate, 2)
        arguments: dict[str, Value] = {
            "amount": amount,
            "from_currency": "USD",
            "to_currency": currency,
        }
        return Step(
            "convert",
            CONVERT_TOOL,
            "",
            "",
            "converted_amount",
            converted,
            arguments,
            True,
            f"How much is {answer_text(amount)} USD in {currency}?",
            money.np,
            money.phrase,
            money=True,
        )


def _answering(
    template: Step, subject: Entity, name: str, phrase: str, money: bool = False
) -> Step:
    """A ranking step answering ``name`` of the top child (its question from the template)."""
    question = f"What is the {phrase} of {template.question}?"
    return replace(
        template,
        field=name,
        answer=subject.fields[name],
        phrase=phrase,
        money=money,
        question=question,
    )


@functools.cache
def _entries(world: World) -> list[tuple[str, str, str, object, object]]:
    """Every possible first call of a walk: (kind, via, tool, sort_by, order)."""
    found: list[tuple[str, str, str, object, object]] = []
    for kind in world.domain.kinds:
        if kind.key is not None and kind.find_tool is not None:
            found.append((kind.name, "key", kind.find_tool, None, None))
        found.append((kind.name, "text", kind.get_tool, None, None))
        for child, link in world.domain.child_links(kind.name):
            for attr in (a for a in child.attrs if a.ranking):
                for order in ("desc", "asc"):
                    found.append((kind.name, "text", str(link.rank_tool), attr.name, order))
    return found


def _label(cursor: Cursor) -> str:
    return cursor.entity.key if cursor.via == "key" and cursor.entity.key else cursor.entity.id


def _numeric(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
