"""E-commerce: customers, orders, products, brands, warehouses and carriers."""

from __future__ import annotations

from astra_synth.procedural import names as n
from astra_synth.procedural.domains.common import FOUNDED, FULL_NAME, LATEST, PHONE, person, titled
from astra_synth.procedural.schema import Attr, Domain, Key, Kind, Link

ECOMMERCE = Domain(
    "ecommerce",
    (
        Kind(
            "customer",
            "CUS",
            "get_customer",
            60,
            find_tool="find_customer",
            key=Key(
                "email",
                "email address",
                "the customer with email {key}",
                n.email_key,
                n.email_variants,
            ),
            extra_fields=(FULL_NAME,),
            attrs=(
                Attr(
                    "loyalty_tier",
                    "loyalty tier",
                    n.choice(("bronze", "silver", "gold", "platinum")),
                ),
                Attr("member_since", "membership start date", n.day()),
                PHONE,
            ),
        ),
        Kind(
            "brand",
            "BRD",
            "get_brand",
            14,
            find_tool="find_brand",
            key=titled(
                ("Labs", "Works", "Goods", "Supply"), refer="the brand {key}", head=n.brand_word
            ),
            attrs=(
                Attr("country", "home country", n.country()),
                FOUNDED,
                Attr("support_email", "support email", n.email()),
            ),
        ),
        Kind(
            "warehouse",
            "WHS",
            "get_warehouse",
            10,
            find_tool="find_warehouse",
            key=titled(("Fulfilment Centre", "Distribution Hub", "Depot")),
            attrs=(
                Attr("manager", "manager", person),
                PHONE,
                Attr("capacity_units", "capacity in units", n.amount(20_000, 400_000, 500)),
            ),
        ),
        Kind(
            "product",
            "PRD",
            "get_product",
            120,
            find_tool="find_product",
            key=Key("name", "product name", "the {key}", n.product_key, n.product_variants),
            attrs=(
                Attr(
                    "price_usd",
                    "price (USD)",
                    n.price(5, 900),
                    money=True,
                    ranking=("most expensive", "cheapest"),
                ),
                Attr("sku", "SKU", n.code("SKU", 6)),
                Attr(
                    "category",
                    "category",
                    n.choice(("kitchen", "outdoor", "office", "audio", "fitness", "home decor")),
                ),
                Attr(
                    "weight_kg", "weight in kg", n.decimal(0, 40), ranking=("heaviest", "lightest")
                ),
            ),
            links=(
                Link(
                    "brand_id", "brand", "brand", ("product", "made by {np}"), "list_brand_products"
                ),
                Link(
                    "warehouse_id",
                    "warehouse",
                    "stocking warehouse",
                    ("product", "stocked at {np}"),
                    "list_warehouse_products",
                ),
            ),
        ),
        Kind(
            "carrier",
            "CAR",
            "get_carrier",
            6,
            find_tool="find_carrier",
            key=titled(("Parcel", "Freight", "Express", "Logistics"), head=n.brand_word),
            attrs=(
                PHONE,
                Attr("tracking_prefix", "tracking prefix", n.code("TRK", 3)),
                Attr(
                    "avg_delivery_days", "average delivery days", n.integer(1, 9), answerable=False
                ),
            ),
        ),
        Kind(
            "order",
            "ORD",
            "get_order",
            attrs=(
                Attr(
                    "total_usd",
                    "order total (USD)",
                    n.price(10, 2500),
                    money=True,
                    ranking=("largest", "smallest"),
                ),
                Attr("placed_on", "order date", n.day(), ranking=LATEST),
                Attr(
                    "status", "status", n.choice(("processing", "shipped", "delivered", "returned"))
                ),
                Attr("tracking_number", "tracking number", n.code("TN", 8)),
            ),
            links=(
                Link(
                    "customer_id",
                    "customer",
                    "customer",
                    ("order", "placed by {np}"),
                    "list_customer_orders",
                    per_parent=(2, 6),
                ),
                Link("product_id", "product", "ordered product"),
                Link("carrier_id", "carrier", "shipping carrier"),
            ),
        ),
    ),
)
