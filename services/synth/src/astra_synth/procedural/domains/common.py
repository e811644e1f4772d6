"""Shared pieces of the built-in domains: common attributes and key makers."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from astra_synth.procedural import names as n
from astra_synth.procedural.schema import Attr, Key, Value


def person(rng: Random) -> Value:
    return n.full_name_key(rng)[0]


def street(rng: Random) -> Value:
    return n.address_key(rng)[0]


def sort_code(rng: Random) -> Value:
    return "-".join(f"{rng.randint(10, 99)}" for _ in range(3))


def titled(
    tails: tuple[str, ...], refer: str = "{key}", head: Callable[[Random], str] = n.place_word
) -> Key:
    """A name key such as "Westbrook Heights": a seeded head word and one of ``tails``."""
    return Key("name", "name", refer, n.titled_key(tails, head), n.titled_variants(tails))


FULL_NAME = ("full_name", "full name")
PHONE = Attr("phone", "phone number", n.phone())
FOUNDED = Attr("founded_year", "founding year", n.integer(1950, 2020))
LATEST = ("most recent", "earliest")
