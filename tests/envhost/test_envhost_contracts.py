"""The contracts of envhost's own answers (``astra_proto.api.envhost``): each published one has
an example that round-trips, that its published JSON Schema accepts, and whose unknown fields
both refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from envhost_support import weather_spec
from pydantic import BaseModel, ValidationError

from astra_proto.api.envhost import CONTRACTS as ENVHOST_CONTRACTS
from astra_proto.api.envhost import BfclPage, EpisodeSummary, TurnResult

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "proto" / "schemas"

EXAMPLES: dict[str, BaseModel] = {
    "EpisodeSummary": EpisodeSummary(
        id="ep-1",
        env_id="env_" + "a" * 32,
        state="open",
        turn=0,
        calls=2,
        mcp_url="http://127.0.0.1:8101/episodes/ep-1/mcp",
        last_active_at="2026-01-15T09:30:00+00:00",
    ),
    "TurnResult": TurnResult(turn=1),
    "BfclPage": BfclPage(total=3, offset=1, items=[weather_spec()]),
}


def published(name: str) -> Any:
    schema = json.loads((SCHEMA_DIR / f"envhost.{name}.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_every_published_contract_has_an_example() -> None:
    assert set(EXAMPLES) == set(ENVHOST_CONTRACTS)
    for name, example in EXAMPLES.items():
        assert type(example) is ENVHOST_CONTRACTS[name]


@pytest.mark.parametrize("name", sorted(ENVHOST_CONTRACTS))
def test_example_round_trips_and_matches_the_published_schema(name: str) -> None:
    example = EXAMPLES[name]
    model = type(example)
    text = example.model_dump_json()
    assert model.model_validate_json(text) == example
    assert model.model_validate_json(text).model_dump_json() == text
    instance = example.model_dump(mode="json")
    validator = published(name)
    validator.validate(instance)
    with pytest.raises(ValidationError, match="unexpected"):
        model.model_validate(instance | {"unexpected": 1})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(instance | {"unexpected": 1})
