"""Travel: cities, airports, airlines, flights and fares."""

from __future__ import annotations

from astra_synth.procedural import names as n
from astra_synth.procedural.domains.common import FOUNDED, person, titled
from astra_synth.procedural.schema import Attr, Domain, Key, Kind, Link

TRAVEL = Domain(
    "travel",
    (
        Kind(
            "city",
            "CTY",
            "get_city",
            20,
            find_tool="find_city",
            key=titled(("",), refer="the city of {key}"),
            attrs=(
                Attr("country", "country", n.country()),
                Attr("population", "population", n.amount(50_000, 9_000_000, 1000)),
                Attr("mayor", "mayor", person),
                Attr(
                    "timezone", "time zone", n.choice(("UTC-5", "UTC-3", "UTC+1", "UTC+3", "UTC+8"))
                ),
            ),
        ),
        Kind(
            "airport",
            "ARP",
            "get_airport",
            30,
            find_tool="find_airport",
            key=Key(
                "iata_code",
                "IATA code",
                "the airport with code {key}",
                n.code_key(3),
                n.code_variants,
            ),
            attrs=(
                Attr("name", "name", n.words(n.place_word, "{} International")),
                Attr(
                    "annual_passengers",
                    "annual passenger count",
                    n.amount(200_000, 80_000_000, 1000),
                    ranking=("busiest", "least busy"),
                ),
                Attr("terminals", "number of terminals", n.integer(1, 6), answerable=False),
            ),
            links=(
                Link("city_id", "city", "city", ("airport", "serving {np}"), "list_city_airports"),
            ),
        ),
        Kind(
            "airline",
            "ALN",
            "get_airline",
            10,
            find_tool="find_airline",
            key=titled(("Air", "Airways", "Airlines"), head=n.brand_word),
            attrs=(
                Attr(
                    "alliance",
                    "alliance",
                    n.choice(("Oneworld", "SkyTeam", "Star Alliance", "unaligned")),
                ),
                Attr("callsign", "callsign", n.words(n.brand_word, "{} Wing")),
                FOUNDED,
                Attr(
                    "fleet_size", "fleet size", n.integer(8, 400), ranking=("largest", "smallest")
                ),
            ),
            links=(
                Link(
                    "hub_airport_id",
                    "airport",
                    "hub airport",
                    ("airline", "based at {np}"),
                    "list_airport_airlines",
                ),
            ),
        ),
        Kind(
            "flight",
            "FLT",
            "get_flight",
            120,
            find_tool="find_flight",
            key=Key(
                "flight_number", "flight number", "flight {key}", n.code_key(2, 3), n.code_variants
            ),
            attrs=(
                Attr(
                    "departure_time",
                    "departure time",
                    n.clock(),
                    ranking=("latest-departing", "earliest-departing"),
                ),
                Attr(
                    "duration_min",
                    "duration in minutes",
                    n.integer(45, 900),
                    ranking=("longest", "shortest"),
                ),
                Attr(
                    "aircraft",
                    "aircraft type",
                    n.choice(("A320", "A321neo", "B737-800", "B787-9", "E190", "A350-900")),
                ),
            ),
            links=(
                Link(
                    "airline_id",
                    "airline",
                    "operating airline",
                    ("flight", "operated by {np}"),
                    "list_airline_flights",
                ),
                Link(
                    "origin_airport_id",
                    "airport",
                    "origin airport",
                    ("flight", "departing from {np}"),
                    "list_airport_departures",
                ),
                Link(
                    "destination_airport_id",
                    "airport",
                    "destination airport",
                    distinct_from="origin_airport_id",
                ),
            ),
        ),
        Kind(
            "fare",
            "FAR",
            "get_fare",
            attrs=(
                Attr(
                    "cabin",
                    "cabin",
                    n.choice(("economy", "premium economy", "business", "first")),
                    distinct_siblings=True,
                ),
                Attr(
                    "price_usd",
                    "price (USD)",
                    n.price(49, 6000),
                    money=True,
                    ranking=("most expensive", "cheapest"),
                ),
                Attr("fare_basis", "fare basis code", n.code("FB", 5)),
            ),
            links=(
                Link(
                    "flight_id",
                    "flight",
                    "flight",
                    ("fare", "for {np}"),
                    "list_flight_fares",
                    per_parent=(2, 4),
                ),
            ),
        ),
    ),
)
