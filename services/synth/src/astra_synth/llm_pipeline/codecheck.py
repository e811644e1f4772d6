"""A static look at tool code before it is sent to the sandbox.

This is not the security boundary (the sandbox is): it refuses early, with a message the LLM
can act on, code that breaks the tool rules: a syntax error, imports outside the allowed
modules, the dynamic-execution built-ins, dunder attribute access (the classic way out of a
restricted namespace), or no top-level function named as the entrypoint. The code is parsed,
never executed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

FORBIDDEN_NAMES = frozenset(
    {"__import__", "eval", "exec", "compile", "open", "input", "breakpoint", "globals", "vars"}
)
"""Built-ins tool code may not name."""


def code_problems(
    code: str, entrypoint: str, allowed_imports: Iterable[str], max_chars: int
) -> list[str]:
    """Why ``code`` breaks the tool rules ([] when it does not)."""
    if len(code) > max_chars:
        return [f"the code is {len(code)} characters long, the limit is {max_chars}"]
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"SyntaxError: {exc.msg} (line {exc.lineno})"]
    allowed = set(allowed_imports)
    problems: list[str] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or "."] if node.level == 0 else ["(relative import)"]
        line = getattr(node, "lineno", "?")
        for module in modules:
            if module.split(".")[0] not in allowed:
                problems.append(f"line {line}: import of {module!r} is not allowed")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"line {node.lineno}: {node.id!r} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            problems.append(f"line {node.lineno}: dunder attribute {node.attr!r} is not allowed")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if entrypoint not in functions:
        problems.append(f"no top-level function named {entrypoint!r} (the entrypoint)")
    return problems
