"""Finance: customers, branches, accounts, transactions and merchants."""

from __future__ import annotations

from astra_synth.procedural import names as n
from astra_synth.procedural.domains.common import LATEST, PHONE, person, sort_code, titled
from astra_synth.procedural.schema import Attr, Domain, Key, Kind, Link

FINANCE = Domain(
    "finance",
    (
        Kind(
            "branch",
            "BRN",
            "get_branch",
            10,
            find_tool="find_branch",
            key=titled(("Main Branch", "Branch", "Plaza Branch")),
            attrs=(
                PHONE,
                Attr("sort_code", "sort code", sort_code),
                Attr("manager", "manager", person),
            ),
        ),
        Kind(
            "customer",
            "CST",
            "get_customer",
            70,
            find_tool="find_customer",
            key=Key(
                "full_name", "full name", "the bank customer {key}", n.person_key, n.person_variants
            ),
            extra_fields=(("email", "email address"),),
            attrs=(
                Attr(
                    "risk_profile",
                    "risk profile",
                    n.choice(("conservative", "balanced", "growth", "aggressive")),
                ),
                Attr(
                    "customer_since",
                    "customer-since date",
                    n.day(),
                    ranking=("newest", "longest-standing"),
                ),
            ),
            links=(
                Link(
                    "home_branch_id",
                    "branch",
                    "home branch",
                    ("customer", "banking at {np}"),
                    "list_branch_customers",
                ),
            ),
        ),
        Kind(
            "merchant",
            "MER",
            "get_merchant",
            25,
            find_tool="find_merchant",
            key=titled(
                ("Market", "Outfitters", "Books", "Electronics", "Pharmacy", "Bistro"),
                head=n.brand_word,
            ),
            attrs=(
                Attr(
                    "category",
                    "merchant category",
                    n.choice(("groceries", "clothing", "books", "electronics", "health", "dining")),
                ),
                Attr("country", "country", n.country()),
                Attr("merchant_code", "merchant code", n.code("MC", 6)),
            ),
        ),
        Kind(
            "account",
            "ACC",
            "get_account",
            attrs=(
                Attr(
                    "balance_usd",
                    "balance (USD)",
                    n.price(0, 250_000),
                    money=True,
                    ranking=("highest-balance", "lowest-balance"),
                ),
                Attr(
                    "account_type",
                    "account type",
                    n.choice(("checking", "savings", "brokerage", "money market")),
                ),
                Attr("opened_on", "opening date", n.day(), ranking=("newest", "oldest")),
                Attr("account_number", "account number", n.code("AN", 8)),
            ),
            links=(
                Link(
                    "customer_id",
                    "customer",
                    "account holder",
                    ("account", "held by {np}"),
                    "list_customer_accounts",
                    per_parent=(1, 4),
                ),
                Link("branch_id", "branch", "branch"),
            ),
        ),
        Kind(
            "transaction",
            "TXN",
            "get_transaction",
            attrs=(
                Attr(
                    "amount_usd",
                    "amount (USD)",
                    n.price(2, 5000),
                    money=True,
                    ranking=("largest", "smallest"),
                ),
                Attr("posted_on", "posting date", n.day(), ranking=LATEST),
                Attr("channel", "channel", n.choice(("card", "online", "wire", "ATM"))),
                Attr("reference", "reference", n.code("REF", 8)),
            ),
            links=(
                Link(
                    "account_id",
                    "account",
                    "account",
                    ("transaction", "on {np}"),
                    "list_account_transactions",
                    per_parent=(2, 6),
                ),
                Link(
                    "merchant_id",
                    "merchant",
                    "merchant",
                    ("transaction", "at {np}"),
                    "list_merchant_transactions",
                ),
            ),
        ),
    ),
)
