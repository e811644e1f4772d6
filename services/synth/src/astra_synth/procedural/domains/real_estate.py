"""Real estate: listings, agents, agencies, neighbourhoods and schools."""

from __future__ import annotations

from astra_synth.procedural import names as n
from astra_synth.procedural.domains.common import FOUNDED, PHONE, person, titled
from astra_synth.procedural.schema import Attr, Domain, Key, Kind, Link

REAL_ESTATE = Domain(
    "real_estate",
    (
        Kind(
            "neighbourhood",
            "NBH",
            "get_neighbourhood",
            18,
            find_tool="find_neighbourhood",
            key=titled(
                ("Heights", "Park", "Gardens", "Village", "Commons", "Quarter"),
                refer="the {key} neighbourhood",
            ),
            attrs=(
                Attr(
                    "median_price_usd",
                    "median home price (USD)",
                    n.amount(180_000, 1_400_000, 500),
                    money=True,
                ),
                Attr("postal_code", "postal code", n.code("PC", 5)),
                Attr("walk_score", "walk score", n.integer(20, 99), answerable=False),
            ),
        ),
        Kind(
            "school",
            "SCH",
            "get_school",
            36,
            find_tool="find_school",
            key=titled(
                ("Elementary School", "Middle School", "High School", "Academy"),
                head=n.surname_word,
            ),
            attrs=(
                Attr(
                    "rating", "rating", n.decimal(1, 9), ranking=("highest-rated", "lowest-rated")
                ),
                Attr(
                    "enrollment",
                    "enrollment",
                    n.integer(150, 2400),
                    ranking=("largest", "smallest"),
                ),
                Attr("principal", "principal", person),
                PHONE,
            ),
            links=(
                Link(
                    "neighbourhood_id",
                    "neighbourhood",
                    "neighbourhood",
                    ("school", "in {np}"),
                    "list_neighbourhood_schools",
                ),
            ),
        ),
        Kind(
            "agency",
            "AGY",
            "get_agency",
            10,
            find_tool="find_agency",
            key=titled(("Realty", "Properties", "Homes", "Estates"), head=n.brand_word),
            attrs=(PHONE, FOUNDED, Attr("broker_license", "broker licence", n.code("BRK", 6))),
            links=(Link("neighbourhood_id", "neighbourhood", "office neighbourhood"),),
        ),
        Kind(
            "agent",
            "AGT",
            "get_agent",
            40,
            find_tool="find_agent",
            key=Key(
                "full_name", "full name", "the agent {key}", n.full_name_key, n.full_name_variants
            ),
            attrs=(
                PHONE,
                Attr("license_number", "licence number", n.code("RE", 6)),
                Attr(
                    "sales_volume_usd",
                    "sales volume (USD)",
                    n.amount(200_000, 40_000_000, 1000),
                    money=True,
                    ranking=("top-selling", "lowest-selling"),
                ),
                Attr("years_experience", "years of experience", n.integer(1, 35), answerable=False),
            ),
            links=(
                Link(
                    "agency_id",
                    "agency",
                    "agency",
                    ("agent", "working at {np}"),
                    "list_agency_agents",
                ),
            ),
        ),
        Kind(
            "listing",
            "LST",
            "get_listing",
            220,
            find_tool="find_listing",
            key=Key(
                "address", "address", "the listing at {key}", n.address_key, n.address_variants
            ),
            attrs=(
                Attr(
                    "price_usd",
                    "asking price (USD)",
                    n.amount(150_000, 2_500_000, 1000),
                    money=True,
                    ranking=("most expensive", "cheapest"),
                ),
                Attr(
                    "square_feet",
                    "floor area in square feet",
                    n.integer(450, 6000),
                    ranking=("largest", "smallest"),
                ),
                Attr(
                    "property_type",
                    "property type",
                    n.choice(
                        ("condo", "townhouse", "detached house", "bungalow", "loft", "duplex")
                    ),
                ),
                Attr(
                    "listed_on",
                    "listing date",
                    n.day(),
                    ranking=("most recently listed", "longest-listed"),
                ),
            ),
            links=(
                Link(
                    "agent_id",
                    "agent",
                    "listing agent",
                    ("listing", "handled by {np}"),
                    "list_agent_listings",
                ),
                Link(
                    "neighbourhood_id",
                    "neighbourhood",
                    "neighbourhood",
                    ("listing", "in {np}"),
                    "list_neighbourhood_listings",
                ),
            ),
        ),
    ),
)
