"""Seeded names and values from built-in word lists, and their look-alikes.

Look-alikes are what makes a procedural environment demand precision: for "12 Maple Court"
the world also holds "12 Maple Crt" and "14 Maple Court", for "Ana Lopez" also "Ana Lopes"
and "Ana Moreno", each a different entity with different data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from random import Random

from astra_synth.procedural.schema import Fields, KeyMaker, KeyVariants, Value, ValueMaker

FIRST_NAMES = (
    "Ana", "Ben", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kavya", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wen", "Yara", "Zane", "Aisha", "Bruno", "Chloe", "Diego", "Emeka",
    "Freya", "Gustav", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco", "Nadia", "Oscar",
)  # fmt: skip
SURNAMES = (
    "Lopez", "Novak", "Okafor", "Tanaka", "Schmidt", "Rossi", "Kowalski", "Haddad",
    "Lindqvist", "Moreau", "Ferreira", "Nakamura", "Petrov", "Gallagher", "Mendes", "Ibrahim",
    "Castillo", "Brennan", "Sato", "Varga", "Dubois", "Jensen", "Kaur", "Larsen", "Mbeki",
    "Nguyen", "Pereira", "Quintero", "Reyes", "Silva", "Torres", "Ueda", "Vasquez", "Weber",
    "Yilmaz", "Zhou", "Abara", "Bianchi", "Carvalho", "Moreno",
)  # fmt: skip
STREET_WORDS = (
    "Maple", "Birch", "Cedar", "Willow", "Aspen", "Hawthorn", "Juniper", "Linden", "Alder",
    "Rowan", "Chestnut", "Magnolia", "Poplar", "Sycamore", "Laurel", "Elm", "Harbor",
    "Meadow", "Orchard", "Summit", "Ridge", "Brook", "Garden", "Lake",
)  # fmt: skip
STREET_SUFFIXES = (
    ("Court", "Crt"), ("Street", "St"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Road", "Rd"),
    ("Drive", "Dr"), ("Place", "Pl"), ("Terrace", "Tce"), ("Boulevard", "Blvd"),
    ("Crescent", "Cres"),
)  # fmt: skip
PLACE_HEADS = (
    "West", "North", "East", "South", "Ash", "Elder", "Fair", "Glen", "High", "Kings",
    "Lake", "Mill", "New", "Oak", "Red", "Silver", "Stone", "Storm", "Sun", "Wood",
    "Bright", "Clear", "Green", "Iron",
)  # fmt: skip
PLACE_TAILS = (
    "brook", "field", "ford", "haven", "mere", "port", "ridge", "stead", "ton", "vale",
    "wick", "bury", "dale", "gate", "holm", "moor",
)  # fmt: skip
BRAND_WORDS = (
    "Apex", "Beacon", "Cobalt", "Crest", "Delta", "Ember", "Falcon", "Granite", "Harbor",
    "Horizon", "Keystone", "Lumen", "Meridian", "Nimbus", "Orbit", "Pinnacle", "Quartz",
    "Sterling", "Summit", "Tidal", "Vertex", "Willow", "Zenith", "Aurora",
)  # fmt: skip
PRODUCT_WORDS = (
    ("Aero", "Kettle"), ("Nova", "Blender"), ("Terra", "Backpack"), ("Luma", "Desk Lamp"),
    ("Flex", "Yoga Mat"), ("Echo", "Speaker"), ("Pulse", "Smartwatch"), ("Zen", "Diffuser"),
    ("Volt", "Power Bank"), ("Breeze", "Fan"), ("Crisp", "Toaster"), ("Glide", "Office Chair"),
)  # fmt: skip
DRUG_HEADS = ("Cor", "Neu", "Ana", "Dex", "Flu", "Lor", "Mel", "Pra", "Ser", "Tor", "Val", "Zol")
DRUG_MIDS = ("a", "e", "i", "o", "ta", "vi", "ro", "ne")
DRUG_TAILS = ("lin", "pril", "zole", "statin", "mab", "dronate", "cillin", "xetine", "tidine")
EMAIL_DOMAINS = ("mailbox.test", "inbox.test", "post.test", "letters.test")
COUNTRIES = (
    "Portugal", "Canada", "Japan", "Kenya", "Chile", "Norway", "Vietnam", "Morocco", "Peru",
    "Ireland", "Ghana", "Finland",
)  # fmt: skip
EPOCH = date(2021, 1, 1)


def spelling_variants(word: str) -> list[str]:
    """Near-identical spellings of a word: one plausible typo or respelling each."""
    swaps = (("z", "s"), ("s", "z"), ("k", "c"), ("c", "k"), ("i", "y"), ("y", "i"),
             ("ph", "f"), ("ll", "l"), ("tt", "t"), ("ou", "o"), ("ei", "ie"))  # fmt: skip
    variants = [word[:i] + new + word[i + len(old) :]
                for old, new in swaps for i in [word.rfind(old)] if i > 0]  # fmt: skip
    variants += [word + "e", word + "s", word[:-1] + word[-1] * 2]
    return [v for v in dict.fromkeys(variants) if v.casefold() != word.casefold()]


def _full_name(rng: Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def _name_variants(name: str, rng: Random) -> list[str]:
    first, _, last = name.rpartition(" ")
    other = rng.choice([s for s in SURNAMES if s != last])
    return [f"{first} {rng.choice(spelling_variants(last))}", f"{first} {other}"]


def full_name_key(rng: Random) -> tuple[str, Fields]:
    return _full_name(rng), {}


def full_name_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    return [(variant, {}) for variant in _name_variants(key, rng)]


def person_key(rng: Random) -> tuple[str, Fields]:
    """A full name, with the person's email address as an extra field."""
    name = _full_name(rng)
    return name, {"email": _email(name, rng.choice(EMAIL_DOMAINS))}


def person_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    domain = str(extra["email"]).partition("@")[2]
    return [(v, {"email": _email(v, domain)}) for v in _name_variants(key, rng)]


def email_key(rng: Random) -> tuple[str, Fields]:
    name = _full_name(rng)
    return _email(name, rng.choice(EMAIL_DOMAINS)), {"full_name": name}


def _email(name: str, domain: str) -> str:
    return name.lower().replace(" ", ".") + "@" + domain


def email_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    name, domain = str(extra["full_name"]), key.partition("@")[2]
    other_domain = rng.choice([d for d in EMAIL_DOMAINS if d != domain])
    found: list[tuple[str, Fields]] = [
        (_email(v, domain), {"full_name": v}) for v in _name_variants(name, rng)
    ]
    return [*found, (_email(name, other_domain), {"full_name": name})]


def address_key(rng: Random) -> tuple[str, Fields]:
    suffix = rng.choice(STREET_SUFFIXES)[0]
    return f"{rng.randint(2, 198)} {rng.choice(STREET_WORDS)} {suffix}", {}


def address_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    number, word, suffix = key.split(" ", 2)
    short = dict(STREET_SUFFIXES)[suffix]
    other = rng.choice([s for s, _ in STREET_SUFFIXES if s != suffix])
    return [(f"{number} {word} {short}", {}), (f"{int(number) + 2} {word} {suffix}", {}),
            (f"{number} {word} {other}", {})]  # fmt: skip


def _place(rng: Random) -> str:
    return rng.choice(PLACE_HEADS) + rng.choice(PLACE_TAILS)


def titled_key(tails: tuple[str, ...], head: Callable[[Random], str] = _place) -> KeyMaker:
    """Keys like "Westbrook Heights": a seeded head word and one of ``tails``."""

    def make(rng: Random) -> tuple[str, Fields]:
        return f"{head(rng)} {rng.choice(tails)}".strip(), {}

    return make


def titled_variants(tails: tuple[str, ...]) -> KeyVariants:
    """Look-alikes of a titled key: the head respelled, or the same head with another tail."""

    def variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
        head, _, tail = key.partition(" ")
        found = [f"{v} {tail}".strip() for v in spelling_variants(head)]
        found = [rng.choice(found)] if found else []
        others = [t for t in tails if t != tail]
        if others:
            found.append(f"{head} {rng.choice(others)}")
        return [(v, {}) for v in found]

    return variants


def place_word(rng: Random) -> str:
    return _place(rng)


def brand_word(rng: Random) -> str:
    return rng.choice(BRAND_WORDS)


def surname_word(rng: Random) -> str:
    return rng.choice(SURNAMES)


def product_key(rng: Random) -> tuple[str, Fields]:
    brand, noun = rng.choice(PRODUCT_WORDS)
    return f"{brand} {noun} {rng.randrange(100, 990, 10)}", {}


def product_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    stem, _, model = key.rpartition(" ")
    return [(f"{stem} {int(model) + 20}", {}), (f"{stem} {model}X", {})]


def drug_key(rng: Random) -> tuple[str, Fields]:
    return rng.choice(DRUG_HEADS) + rng.choice(DRUG_MIDS) + rng.choice(DRUG_TAILS), {}


def drug_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    return [(v, {}) for v in spelling_variants(key)[:2]]


def code_key(length: int, digits: int = 0) -> KeyMaker:
    """Codes such as airport codes ("QXR", digits=0) or flight numbers ("SW482")."""

    def make(rng: Random) -> tuple[str, Fields]:
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXZ") for _ in range(length))
        number = str(rng.randint(10 ** (digits - 1), 10**digits - 1)) if digits else ""
        return letters + number, {}

    return make


def code_variants(key: str, extra: Fields, rng: Random) -> list[tuple[str, Fields]]:
    """One character changed: a neighbouring digit or letter."""
    found: list[tuple[str, Fields]] = []
    for index in rng.sample(range(len(key)), min(2, len(key))):
        char = key[index]
        new = str((int(char) + 1) % 10) if char.isdigit() else chr((ord(char) - 64) % 26 + 65)
        found.append((key[:index] + new + key[index + 1 :], {}))
    return found


# --- attribute value makers ------------------------------------------------------------


def amount(low: int, high: int, step: int) -> ValueMaker:
    return lambda rng: rng.randrange(low, high, step)


def integer(low: int, high: int) -> ValueMaker:
    return lambda rng: rng.randint(low, high)


def decimal(low: int, high: int) -> ValueMaker:
    """A number with one decimal, never a whole number (so "4.0" cannot pose as "4")."""

    def make(rng: Random) -> Value:
        tenths = rng.randint(low * 10, high * 10)
        return round((tenths if tenths % 10 else tenths + 1) / 10, 1)

    return make


def price(low: int, high: int) -> ValueMaker:
    """Prices with cents, such as 129.95."""
    return lambda rng: round(rng.randint(low * 100, high * 100) / 100, 2)


def day(span_days: int = 1400) -> ValueMaker:
    return lambda rng: (EPOCH + timedelta(days=rng.randrange(span_days))).isoformat()


def clock() -> ValueMaker:
    return lambda rng: f"{rng.randint(5, 22):02d}:{rng.randrange(0, 60, 5):02d}"


def choice(values: tuple[str, ...]) -> ValueMaker:
    return lambda rng: rng.choice(values)


def phone() -> ValueMaker:
    return lambda rng: f"+1-{rng.randint(201, 989)}-555-{rng.randint(0, 9999):04d}"


def code(prefix: str, digits: int) -> ValueMaker:
    return lambda rng: f"{prefix}-{rng.randint(10 ** (digits - 1), 10**digits - 1)}"


def email() -> ValueMaker:
    return lambda rng: _email(_full_name(rng), rng.choice(EMAIL_DOMAINS))


def words(pick: Callable[[Random], str], template: str = "{}") -> ValueMaker:
    return lambda rng: template.format(pick(rng))


def country() -> ValueMaker:
    return choice(COUNTRIES)


def birth_day() -> ValueMaker:
    start = date(1940, 1, 1)
    return lambda rng: (start + timedelta(days=rng.randrange(27_000))).isoformat()
