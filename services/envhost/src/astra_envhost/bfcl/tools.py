"""BFCL function documents → ``ToolSpec`` (JSON Schema parameters, valid names)."""

from __future__ import annotations

import re
from typing import Any

from astra_proto.tools import TOOL_NAME_PATTERN, ToolSpec

# BFCL's Python-flavoured type names → JSON Schema types. This follows BFCL's own
# GORILLA_TO_OPENAPI table (what its function-calling handlers send to OpenAI-style APIs),
# except "any": BFCL sends "string", JSON Schema's way to say "anything" is no "type" at all.
TYPE_MAPPING: dict[str, str | None] = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "float": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "dict": "object",
    "object": "object",
    "any": None,
}

PYTHON_SYNTAX_HINT = " Note that the provided function is in Python 3 syntax."
"""Appended by BFCL to every Python function description it shows a model."""

FLOAT_HINT = " This is a float type value."
"""Appended by BFCL to the description of every "float" parameter (JSON Schema has no float)."""

_NAME_RE = re.compile(TOOL_NAME_PATTERN)


def convert_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """One BFCL parameter schema as JSON Schema, recursively (items, properties).

    Keys other than ``type``, ``items`` and ``properties`` (description, default, enum,
    required, ...) are kept as they are.
    """
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            converted[key] = {name: convert_schema(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            converted[key] = convert_schema(value)
        else:
            converted[key] = value
    bfcl_type = schema.get("type")
    if bfcl_type is None:
        return converted
    if bfcl_type not in TYPE_MAPPING:
        raise ValueError(f"unknown BFCL parameter type {bfcl_type!r}")
    json_type = TYPE_MAPPING[bfcl_type]
    if json_type is not None:
        converted["type"] = json_type
    if bfcl_type == "float":
        converted["format"] = "float"
        converted["description"] = str(converted.get("description", "")) + FLOAT_HINT
    return converted


def function_doc_to_tool(doc: dict[str, Any], domain: str) -> ToolSpec:
    """A BFCL multi-turn function document as a ``ToolSpec``.

    The name is kept as it is (the backends dispatch on it); a name that does not fit
    ``TOOL_NAME_PATTERN`` is refused rather than renamed, since no multi-turn function has one.
    The ``response`` document is not carried over as ``output_schema``: BFCL's functions do
    not always return what it says (errors, lists in long-context mode).
    """
    name = str(doc["name"])
    if not _NAME_RE.match(name):
        raise ValueError(f"BFCL function name {name!r} is not a valid tool name")
    description = str(doc.get("description", "")).strip() or f"The BFCL function {name}."
    parameters = doc.get("parameters") or {}
    properties = {
        param: convert_schema(schema) for param, schema in parameters.get("properties", {}).items()
    }
    required = [param for param in parameters.get("required", []) if param in properties]
    json_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        json_schema["required"] = required
    return ToolSpec(
        name=name,
        description=description + PYTHON_SYNTAX_HINT,
        parameters=json_schema,
        domain=domain,
    )
