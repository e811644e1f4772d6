"""The knowledge graph of a domain: entities with keys, attributes, links and look-alikes.

One world per domain, fixed by the generator version (so an entity means the same thing in
every environment). It is split in two closed partitions by a hash of the entity id (see
``splits.entity_partition``): links never cross partitions, so a task walked in one
partition only ever touches entities of that partition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from random import Random

from astra_synth.procedural.domains import DOMAINS
from astra_synth.procedural.schema import Domain, Fields, Kind, Value
from astra_synth.procedural.splits import GENERATOR, PARTITIONS, entity_partition

LOOKALIKE_RATE = 0.45
"""Share of entities that get a near-identical twin (name variant and neighbouring id)."""
HELDOUT_SHARE = 4
"""The held-out partition holds about 1/HELDOUT_SHARE as many entities as the train one."""
BASE_RATES = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 151.0,
    "CAD": 1.36,
    "CHF": 0.88,
    "AUD": 1.52,
    "SEK": 10.6,
    "INR": 83.2,
    "BRL": 5.05,
}
_MAX_DRAWS = 200


def normalise_key(text: str) -> str:
    """How tools compare a natural key: whitespace collapsed, case-folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, eq=False)
class Entity:
    """One row of the world, ``fields`` in the order a tool returns them."""

    kind: str
    id: str
    partition: str
    key: str | None
    fields: dict[str, Value]


@dataclass(frozen=True, eq=False)
class World:
    """Every entity of a domain, with the indexes tasks are walked on."""

    domain: Domain
    entities: dict[str, Entity]
    ids: dict[tuple[str, str], tuple[str, ...]]
    """(kind, partition) → entity ids, in creation order."""
    children: dict[tuple[str, str, str], tuple[str, ...]]
    """(child kind, link field, parent id) → child ids, for ranked reverse relations."""
    lookalikes: dict[str, tuple[str, ...]]
    rates: dict[str, float]

    def kind(self, entity: Entity) -> Kind:
        return self.domain.kind(entity.kind)

    def group(self, kind: str, link: str, parent: str) -> tuple[str, ...]:
        return self.children.get((kind, link, parent), ())


@dataclass
class _Draft:
    kind: Kind
    id: str
    partition: str
    key: str | None = None
    extra: dict[str, Value] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Value] = field(default_factory=dict)
    original: _Draft | None = None


@functools.cache
def build_world(domain_name: str) -> World:
    """The world of a domain (built once per process; deterministic across processes)."""
    return _Builder(DOMAINS[domain_name]).build()


class _Builder:
    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.rng = Random(f"{GENERATOR}|world|{domain.name}")
        self.used: set[str] = set()
        self.keys: dict[str, set[str]] = {k.name: set() for k in domain.kinds}
        self.drafts: list[_Draft] = []
        self.ids: dict[tuple[str, str], list[str]] = {}

    def build(self) -> World:
        for kind in self.domain.kinds:
            for partition in PARTITIONS:
                self._create(kind, partition)
        by_id = {d.id: d for d in self.drafts}
        for draft in self.drafts:
            self._link(draft)
        children: dict[tuple[str, str, str], list[str]] = {}
        for draft in self.drafts:
            for link in draft.kind.links:
                if link.rank_tool:
                    slot = (draft.kind.name, link.field, draft.links[link.field])
                    children.setdefault(slot, []).append(draft.id)
        for draft in self.drafts:
            self._fill(draft, by_id, children)
        lookalikes: dict[str, list[str]] = {}
        for draft in self.drafts:
            if draft.original is not None:
                twins = [draft.original.id, *lookalikes.get(draft.original.id, [])]
                for twin in twins:
                    lookalikes.setdefault(twin, []).append(draft.id)
                    lookalikes.setdefault(draft.id, []).append(twin)
        rates = {c: round(r * self.rng.uniform(0.95, 1.05), 4) for c, r in BASE_RATES.items()}
        rates["USD"] = 1.0
        return World(
            domain=self.domain,
            entities={d.id: self._freeze(d) for d in self.drafts},
            ids={slot: tuple(ids) for slot, ids in self.ids.items()},
            children={slot: tuple(ids) for slot, ids in children.items()},
            lookalikes={i: tuple(sorted(set(t))) for i, t in lookalikes.items()},
            rates=rates,
        )

    def _create(self, kind: Kind, partition: str) -> None:
        parent_link = kind.parent_link()
        originals: list[_Draft] = []
        if parent_link is not None and parent_link.per_parent is not None:
            low, high = parent_link.per_parent
            for parent in self.ids.get((parent_link.target, partition), []):
                for _ in range(self.rng.randint(low, high)):
                    draft = self._new(kind, partition, self._new_id(kind.prefix, partition))
                    draft.links[parent_link.field] = parent
                    originals.append(draft)
        else:
            quota = kind.count if partition == "train" else max(4, kind.count // HELDOUT_SHARE)
            originals = [
                self._new(kind, partition, self._new_id(kind.prefix, partition))
                for _ in range(quota)
            ]
        for original in originals:
            if self.rng.random() < LOOKALIKE_RATE:
                self._lookalike(original)

    def _new(self, kind: Kind, partition: str, entity_id: str) -> _Draft:
        draft = _Draft(kind, entity_id, partition)
        if kind.key is not None:
            for _ in range(_MAX_DRAWS):
                key, extra = kind.key.make(self.rng)
                if self._claim_key(kind, key):
                    draft.key, draft.extra = key, dict(extra)
                    break
            else:
                raise RuntimeError(f"ran out of distinct {kind.name} keys")
        self._register(draft)
        return draft

    def _lookalike(self, original: _Draft) -> None:
        kind = original.kind
        twin = _Draft(kind, self._neighbour_id(original.id, original.partition), original.partition)
        twin.original = original
        if kind.key is not None and original.key is not None:
            variants = kind.key.variants(original.key, original.extra, self.rng)
            self.rng.shuffle(variants)
            chosen = next(((k, e) for k, e in variants if self._claim_key(kind, k)), None)
            if chosen is None:
                self.used.discard(twin.id)
                return
            twin.key, twin.extra = chosen[0], dict(chosen[1])
        parent_link = kind.parent_link()
        if parent_link is not None:
            parents = self.ids[(parent_link.target, original.partition)]
            twin.links[parent_link.field] = self.rng.choice(parents)
        self._register(twin)

    def _register(self, draft: _Draft) -> None:
        self.drafts.append(draft)
        self.ids.setdefault((draft.kind.name, draft.partition), []).append(draft.id)

    def _claim_key(self, kind: Kind, key: str) -> bool:
        normal = normalise_key(key)
        if not normal or normal in self.keys[kind.name]:
            return False
        self.keys[kind.name].add(normal)
        return True

    def _new_id(self, prefix: str, partition: str) -> str:
        while True:
            candidate = f"{prefix}-{self.rng.randint(10_000, 99_999)}"
            if candidate not in self.used and entity_partition(candidate) == partition:
                self.used.add(candidate)
                return candidate

    def _neighbour_id(self, entity_id: str, partition: str) -> str:
        prefix, number = entity_id.split("-")
        for distance in range(1, 80):
            for step in (distance, -distance):
                candidate = f"{prefix}-{int(number) + step}"
                if (
                    10_000 <= int(number) + step <= 99_999
                    and candidate not in self.used
                    and entity_partition(candidate) == partition
                ):
                    self.used.add(candidate)
                    return candidate
        return self._new_id(prefix, partition)

    def _link(self, draft: _Draft) -> None:
        for link in draft.kind.links:
            if link.field in draft.links:
                continue
            avoid = {draft.id, draft.links.get(link.distinct_from or "", "")}
            targets = [t for t in self.ids[(link.target, draft.partition)] if t not in avoid]
            draft.links[link.field] = self.rng.choice(targets)

    def _fill(
        self,
        draft: _Draft,
        by_id: dict[str, _Draft],
        children: dict[tuple[str, str, str], list[str]],
    ) -> None:
        """Draw the attributes: sortable ones unique among siblings, twins unlike originals."""
        groups = [
            children[(draft.kind.name, link.field, draft.links[link.field])]
            for link in draft.kind.links
            if link.rank_tool
        ]
        for attr in draft.kind.attrs:
            taken: set[Value] = set()
            if attr.ranking or attr.distinct_siblings:
                taken = {
                    by_id[s].attrs[attr.name]
                    for g in groups
                    for s in g
                    if attr.name in by_id[s].attrs
                }
            if draft.original is not None:
                taken.add(draft.original.attrs[attr.name])
            value = attr.make(self.rng)
            for _ in range(_MAX_DRAWS):
                if value not in taken:
                    break
                value = attr.make(self.rng)
            else:
                if attr.ranking:
                    raise RuntimeError(f"no unique {attr.name} left for {draft.id}")
            draft.attrs[attr.name] = value

    @staticmethod
    def _freeze(draft: _Draft) -> Entity:
        kind = draft.kind
        fields: dict[str, Value] = {kind.id_field: draft.id}
        if kind.key is not None and draft.key is not None:
            fields[kind.key.field] = draft.key
        fields.update({name: draft.extra[name] for name, _ in kind.extra_fields})
        fields.update(draft.attrs)
        fields.update({link.field: draft.links[link.field] for link in kind.links})
        return Entity(kind.name, draft.id, draft.partition, draft.key, fields)


def entity_fields(entity: Entity, names: tuple[str, ...]) -> Fields:
    """The named fields of an entity, in that order."""
    return {name: entity.fields[name] for name in names}
