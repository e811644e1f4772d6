"""Environment specs by id, read from the registry database and cached (specs are immutable)."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from astra_common.db import Database, NotFoundError
from astra_proto import EnvironmentSpec, ToolSpec, canonical_json


class UnknownEnvironment(LookupError):
    """No environment with this id is registered."""


@dataclass(frozen=True)
class LoadedEnvironment:
    """A spec with what serving it needs prepared once: argument validators by tool name."""

    spec: EnvironmentSpec
    validators: dict[str, Draft202012Validator]

    @classmethod
    def prepare(cls, spec: EnvironmentSpec) -> LoadedEnvironment:
        """Compile every tool's argument schema; a broken schema is an error now, not later."""
        return cls(spec=spec, validators={t.name: compile_validator(t) for t in spec.tool_specs()})


def compile_validator(tool: ToolSpec) -> Draft202012Validator:
    """A JSON Schema validator for a tool's arguments; ``ValueError`` for an invalid schema.

    Validators are shared between tools with the same schema (checking a schema against the
    metaschema costs milliseconds, and benchmark packs repeat the same tools across hundreds
    of environments); a validator holds no per-call state.
    """
    try:
        return _validator_for(canonical_json(tool.parameters))
    except SchemaError as exc:
        raise ValueError(f"tool {tool.name!r} has an invalid input schema: {exc.message}") from exc


@lru_cache(maxsize=4096)
def _validator_for(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def argument_errors(validator: Draft202012Validator, arguments: dict[str, Any]) -> list[str]:
    """Readable violations of the schema by ``arguments`` (empty when they are valid)."""
    messages = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path)
        message = json_spoken(error)
        messages.append(f"{where}: {message}" if where else message)
    return messages


def json_spoken(error: ValidationError) -> str:
    """``error.message`` with the values it quotes written as JSON (``null``, ``true``,
    ``"name"``) instead of Python's ``repr`` (``None``, ``True``, ``'name'``): clients and
    models speak JSON."""
    values: list[Any] = [error.instance, error.validator_value]
    for value in (error.instance, error.validator_value):
        if isinstance(value, dict):
            values.extend(value)
            values.extend(value.values())
        elif isinstance(value, list):
            values.extend(value)
    written: dict[str, str] = {}
    for value in values:
        try:
            as_json = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            continue
        if repr(value) != as_json:
            written[repr(value)] = as_json
    if not written:
        return error.message
    shown = sorted(written, key=len, reverse=True)  # longest first: a list before its items
    pattern = "|".join(rf"\b{re.escape(s)}\b" if s[0].isalnum() else re.escape(s) for s in shown)
    return re.sub(pattern, lambda match: written[match.group(0)], error.message)


class EnvironmentRegistry:
    """Reads specs from the database on first use and keeps the most recent ones in memory.

    Environments registered after start-up are found on their first request: nothing needs a
    restart, and since a spec never changes under its id the cache never goes stale.
    """

    def __init__(self, database: Database, capacity: int = 4096) -> None:
        self.database = database
        self.capacity = capacity
        self._cache: OrderedDict[str, LoadedEnvironment] = OrderedDict()

    async def get(self, env_id: str) -> LoadedEnvironment:
        """The environment ``env_id``; raises ``UnknownEnvironment``."""
        loaded = self._cache.get(env_id)
        if loaded is not None:
            self._cache.move_to_end(env_id)
            return loaded
        try:
            async with self.database.transaction() as repos:
                spec = await repos.environments.get(env_id)
        except NotFoundError:
            raise UnknownEnvironment(f"no environment {env_id!r} is registered") from None
        loaded = LoadedEnvironment.prepare(spec)
        self._cache[env_id] = loaded
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return loaded
