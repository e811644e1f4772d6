"""Source templates of the generated tools (``string.Template``: ``$name`` placeholders).

Plain built-ins only: no imports, no I/O, no state that changes between calls.
"""

SELECT = """

def _select(record, fields):
    if fields is None:
        return dict(record)
    if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
        raise ValueError("fields must be a list of field names")
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown fields {unknown}; the fields are {list(FIELDS)}")
    return {name: record[name] for name in FIELDS if name in fields}
"""

GET = (
    '''RECORDS = $records
FIELDS = $fields


def $name($param, fields=None):
    """Get one $label by its id."""
    if not isinstance($param, str) or not $param.strip():
        raise ValueError("$param must be a non-empty string")
    record = RECORDS.get($param.strip().upper())
    if record is None:
        raise ValueError(f"no $label has the id {$param.strip()!r}")
    return _select(record, fields)
'''
    + SELECT
)

FIND = (
    '''RECORDS = $records
FIELDS = $fields


def $name($param, fields=None):
    """Find the $label with this $phrase (case and spacing ignored)."""
    if not isinstance($param, str) or not $param.strip():
        raise ValueError("$param must be a non-empty string")
    record = RECORDS.get(" ".join($param.split()).casefold())
    if record is None:
        raise ValueError(f"no $label has the $phrase {$param.strip()!r}")
    return _select(record, fields)
'''
    + SELECT
)

RANK = '''GROUPS = $groups
SORTABLE = $sortable


def $name($param, sort_by, order="desc", limit=5):
    """The children of one $label, sorted by one field."""
    if not isinstance($param, str) or not $param.strip():
        raise ValueError("$param must be a non-empty string")
    parent = $param.strip().upper()
    if parent not in GROUPS:
        raise ValueError(f"no $label has the id {parent!r}")
    if sort_by not in SORTABLE:
        raise ValueError(f"sort_by must be one of {list(SORTABLE)}, not {sort_by!r}")
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
        raise ValueError(f"limit must be a whole number from 1 to 50, not {limit!r}")
    rows = sorted(GROUPS[parent], key=lambda row: row[sort_by], reverse=order == "desc")
    return {
        "$param": parent,
        "sort_by": sort_by,
        "order": order,
        "total": len(rows),
        "results": [dict(row) for row in rows[:limit]],
    }
'''

CONVERT = '''RATES = $rates


def convert_currency(amount, from_currency, to_currency):
    """Convert an amount between currencies (RATES: units of each currency per US dollar)."""
    if isinstance(amount, str):
        try:
            amount = float(amount.replace(",", "").strip())
        except ValueError:
            raise ValueError(f"amount must be a number, not {amount!r}") from None
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"amount must be a number, not {amount!r}")
    if not 0 <= amount < 1e15:
        raise ValueError(f"amount must be between 0 and 1e15, not {amount!r}")
    codes = []
    for name, code in (("from_currency", from_currency), ("to_currency", to_currency)):
        if not isinstance(code, str) or code.strip().upper() not in RATES:
            raise ValueError(f"{name} must be one of {sorted(RATES)}, not {code!r}")
        codes.append(code.strip().upper())
    rate = RATES[codes[1]] / RATES[codes[0]]
    return {
        "amount": amount,
        "from_currency": codes[0],
        "to_currency": codes[1],
        "rate": round(rate, 6),
        "converted_amount": round(amount * rate, 2),
    }
'''
