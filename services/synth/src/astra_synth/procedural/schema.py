"""The shape of a procedural domain: entity kinds, their keys, attributes and relations.

A domain is data, not code: the world builder, the task composer and the tool writer all
work from these declarations, so a new domain is one more table in ``domains.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from random import Random

Value = str | int | float
Fields = Mapping[str, Value]
ValueMaker = Callable[[Random], Value]
KeyMaker = Callable[[Random], tuple[str, Fields]]
KeyVariants = Callable[[str, Fields, Random], list[tuple[str, Fields]]]


@dataclass(frozen=True)
class Attr:
    """A plain attribute of an entity kind."""

    name: str
    phrase: str
    make: ValueMaker
    answerable: bool = True
    ranking: tuple[str, str] | None = None
    """Superlatives when sorted descending and ascending ("most expensive", "cheapest"); an
    attribute with a ranking is sortable by the kind's list tools and unique among siblings."""
    money: bool = False
    """A US-dollar amount: ``convert_currency`` can take it further."""
    distinct_siblings: bool = False
    """Unique among the children of one parent (e.g. the cabin of a flight's fares)."""


@dataclass(frozen=True)
class Key:
    """The natural key a question names an entity by (an address, a full name, a code)."""

    field: str
    phrase: str
    refer: str
    """Noun phrase naming the entity by its key: "the listing at {key}"."""
    make: KeyMaker
    variants: KeyVariants


@dataclass(frozen=True)
class Link:
    """A many-to-one relation: ``field`` holds the id of a ``target`` entity."""

    field: str
    target: str
    label: str
    """What the target is to the entity: "listing agent" (the listing agent of X)."""
    children: tuple[str, str] | None = None
    """Noun and phrase for the reverse relation ("listing", "handled by {np}"); set, it gives
    the target kind a list tool ranking these children."""
    rank_tool: str | None = None
    per_parent: tuple[int, int] | None = None
    """Children are generated per parent, between these many of them."""
    distinct_from: str | None = None
    """Another link field of the same entity that must point elsewhere (origin/destination)."""


@dataclass(frozen=True)
class Kind:
    """An entity type of a domain."""

    name: str
    prefix: str
    get_tool: str
    count: int = 0
    key: Key | None = None
    find_tool: str | None = None
    attrs: tuple[Attr, ...] = ()
    links: tuple[Link, ...] = ()
    extra_fields: tuple[tuple[str, str], ...] = ()
    """(field, phrase) of fields the key maker fills besides the key (the email of a name)."""

    @property
    def id_field(self) -> str:
        return f"{self.name}_id"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def parent_link(self) -> Link | None:
        """The link whose parents generate this kind's entities, if any."""
        return next((link for link in self.links if link.per_parent), None)

    def summary_fields(self) -> tuple[str, ...]:
        """Fields a list tool returns for each child: id, key and sortable attributes."""
        key = (self.key.field,) if self.key else ()
        return (self.id_field, *key, *(a.name for a in self.attrs if a.ranking))


@dataclass(frozen=True)
class Domain:
    """A knowledge domain: its entity kinds, in generation order (parents first)."""

    name: str
    kinds: tuple[Kind, ...]
    money_label: str = "USD"

    def kind(self, name: str) -> Kind:
        return next(k for k in self.kinds if k.name == name)

    def child_links(self, parent: str) -> list[tuple[Kind, Link]]:
        """(child kind, link) of every ranked reverse relation into ``parent``."""
        return [(k, link) for k in self.kinds for link in k.links
                if link.target == parent and link.rank_tool]  # fmt: skip
