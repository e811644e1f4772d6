"""Argument shapes: a quick check of tool arguments whose schema is only an object of typed
properties, which never accepts what the schema's jsonschema validator refuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


@dataclass(frozen=True)
class ArgumentShape:
    """A tool's argument schema when it is only an object of typed properties.

    ``accepts`` is a quick test with the validator's own semantics (JSON Schema 2020-12 types:
    ``integer`` admits integral floats, no type admits a bool but ``boolean``); arguments it
    does not accept go to the validator, which names the violation.
    """

    types: dict[str, tuple[str, ...]]
    """Allowed JSON types per declared property (empty: any value)."""
    required: tuple[str, ...]
    closed: bool
    """``additionalProperties: false``."""

    def accepts(self, arguments: dict[str, Any]) -> bool:
        for name in self.required:
            if name not in arguments:
                return False
        for name, value in arguments.items():
            if name not in self.types:
                if self.closed:
                    return False
                continue
            allowed = self.types[name]
            if allowed and not any(_is_type(value, kind) for kind in allowed):
                return False
        return True


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[kind])


def _property_types(schema: Any) -> tuple[str, ...] | None:
    """A property's allowed types (empty: any value), or None when its schema says more."""
    if not isinstance(schema, dict) or not schema.keys() <= _ANNOTATIONS | {"type", "format"}:
        return None
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not all(kind in _JSON_TYPES for kind in kinds):
        return None
    return tuple(kinds)


def _compile_shape(validator: Draft202012Validator) -> ArgumentShape | None:
    schema = validator.schema
    if (
        validator.TYPE_CHECKER is not Draft202012Validator.TYPE_CHECKER
        or validator.format_checker is not None  # formats are annotations only without one
        or not isinstance(schema, dict)
        or schema.get("type") != "object"
        or not schema.keys()
        <= _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
    ):
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    closed = schema.get("additionalProperties", True)
    if (
        not isinstance(properties, dict)
        or not isinstance(required, list)
        or not all(isinstance(name, str) for name in required)
        or not isinstance(closed, bool)
    ):
        return None
    types: dict[str, tuple[str, ...]] = {}
    for name, property_schema in properties.items():
        kinds = _property_types(property_schema)
        if kinds is None:
            return None
        types[name] = kinds
    return ArgumentShape(types=types, required=tuple(required), closed=not closed)


_SHAPES: dict[int, tuple[Draft202012Validator, ArgumentShape | None]] = {}


def argument_shape(validator: Draft202012Validator) -> ArgumentShape | None:
    """``validator``'s schema as an ``ArgumentShape``, when it is that simple (kept per
    validator; validators are shared between tools with the same schema)."""
    kept = _SHAPES.get(id(validator))
    if kept is not None and kept[0] is validator:
        return kept[1]
    if len(_SHAPES) >= 8192:
        _SHAPES.clear()
    shape = _compile_shape(validator)
    _SHAPES[id(validator)] = (validator, shape)
    return shape
