"""The contracts of synth's API (``astra_proto.api.synth``): each published one has an example
that round-trips and that its published JSON Schema accepts; requests refuse unknown fields,
in the model and in the schema; the job requests keep their cross-field rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError
from synth_contract_examples import EXAMPLES

from astra_proto import ContractModel, ToolSpec
from astra_proto.api.synth import (
    CONTRACTS,
    EmulatedServer,
    EmulateRequest,
    EnvironmentJobRequest,
    PastCall,
    TrajectorySettings,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "proto" / "schemas"


def published(name: str) -> Any:
    schema = json.loads((SCHEMA_DIR / f"synth.{name}.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_every_published_contract_has_an_example() -> None:
    assert set(EXAMPLES) == set(CONTRACTS)
    for name, example in EXAMPLES.items():
        assert type(example) is CONTRACTS[name]


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_example_round_trips_and_matches_the_published_schema(name: str) -> None:
    example = EXAMPLES[name]
    model = type(example)
    text = example.model_dump_json()
    assert model.model_validate_json(text) == example
    assert model.model_validate_json(text).model_dump_json() == text
    instance = example.model_dump(mode="json")
    validator = published(name)
    validator.validate(instance)
    if issubclass(model, ContractModel):  # what the model forbids, the schema forbids
        with pytest.raises(ValidationError, match="unexpected"):
            model.model_validate(instance | {"unexpected": 1})
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(instance | {"unexpected": 1})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hops": [0, 3]}, "hops must lie between 1 and 20"),
        ({"source": "qa"}, "source 'qa' needs qa_jsonl"),
        ({"source": "knowledge"}, "source 'knowledge' needs knowledge texts"),
        ({"source": "procedural", "knowledge": ["x"]}, "takes no qa_jsonl or knowledge"),
        ({"knowledge": ["x"], "bfcl": {}}, "source 'knowledge' takes no bfcl selection"),
        ({"knowledge": ["x" * 50_001]}, "at most 50000 characters"),
    ],
)
def test_environment_job_request_refuses_inputs_that_do_not_match_the_source(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        EnvironmentJobRequest.model_validate(fields)


def test_environment_job_request_resolves_its_source() -> None:
    assert EnvironmentJobRequest().resolved_source() == "procedural"
    assert EnvironmentJobRequest(qa_jsonl="{}").resolved_source() == "qa"
    assert EnvironmentJobRequest(knowledge=["text"]).resolved_source() == "knowledge"
    assert EnvironmentJobRequest(bfcl={}).resolved_source() == "bfcl"
    assert EnvironmentJobRequest(qa_jsonl="é").qa_size() == 2


def test_settings_and_emulator_calls_keep_their_rules() -> None:
    with pytest.raises(ValidationError, match="min_chain_length must not exceed"):
        TrajectorySettings(min_chain_length=4, max_chain_length=2)
    server = EmulatedServer(name="weather", tools=[ToolSpec(name="t", description="A tool.")])
    with pytest.raises(ValidationError, match="at least len\\(history\\)"):
        EmulateRequest(server=server, tool="t", history=[PastCall(tool="t")], index=0)
