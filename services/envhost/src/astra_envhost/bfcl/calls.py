"""BFCL call strings (``cd(folder='x')``) ↔ structured calls, and JSON-safe outputs."""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_INT_BITS = 13_000
"""About 3,900 decimal digits: below Python's 4,300-digit limit on int → str conversion."""


def is_identifier(name: str) -> bool:
    """Whether ``name`` can stand as a function name in a BFCL call string."""
    return bool(_IDENTIFIER.match(name))


def python_literal(value: Any) -> str:
    """``value`` as a Python literal: ``repr`` for JSON data, as BFCL's decoders write it.

    Non-finite floats, which ``repr`` writes as bare ``nan``/``inf``, become ``float('nan')``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(python_literal(item) for item in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        items = (f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def format_call(name: str, arguments: Mapping[str, Any]) -> str:
    """One structured call as BFCL's function-calling decoder writes it.

    ``convert_to_function_call``: ``name(k1=repr(v1),k2=repr(v2))``, no spaces.
    """
    if not is_identifier(name):
        raise ValueError(f"{name!r} is not a function name")
    for key in arguments:
        if not is_identifier(key):
            raise ValueError(f"{key!r} is not an argument name")
    return f"{name}({','.join(f'{k}={python_literal(v)}' for k, v in arguments.items())})"


def parse_call(
    call: str, signature_of: Callable[[str], inspect.Signature]
) -> tuple[str, dict[str, Any]]:
    """A BFCL call string as ``(name, keyword arguments)``, without evaluating any code.

    Positional arguments (the ground truth has some, e.g. ``sort('report.pdf')``) are named
    from ``signature_of(name)``. Raises ``ValueError`` for anything but a call of a plain name
    with literal arguments.
    """
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a call: {call!r}") from exc
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a call of a plain function name: {call!r}")
    name = node.func.id
    arguments: dict[str, Any] = {}
    if node.args:
        params = [
            p.name
            for p in signature_of(name).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        ]
        if len(node.args) > len(params):
            raise ValueError(f"too many positional arguments in {call!r}")
        for param, arg in zip(params, node.args, strict=False):
            arguments[param] = _literal(arg, call)
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError(f"**kwargs in {call!r}")
        arguments[keyword.arg] = _literal(keyword.value, call)
    return name, arguments


def _literal(node: ast.expr, call: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError as exc:
        raise ValueError(f"argument is not a literal in {call!r}") from exc


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: containers copied, tuples and sets as lists, keys as strings.

    Non-finite floats and decimals (``MathAPI.square_root``) become their string form, mpmath
    numbers (``MathAPI.logarithm``) too, in the precision they were computed at; any other
    object becomes its ``str``. Integers too long to print raise ``ValueError``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise ValueError(f"integer result of {value.bit_length()} bits is too large")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(item) for item in items]
    return str(value)
