"""The contracts of the trainer's API (``astra_proto.api.trainer``): each published one has an
example that round-trips, that its published JSON Schema accepts, and whose unknown fields
both refuse; the run configs are the requests' knobs plus what the service chooses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from astra_proto.api.trainer import CONTRACTS as TRAINER_CONTRACTS
from astra_proto.api.trainer import (
    GRPOOptions,
    GRPORunRequest,
    RunStatus,
    SFTOptions,
    SFTRunRequest,
)
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.sft import SFTRunConfig

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "proto" / "schemas"

EXAMPLES: dict[str, BaseModel] = {
    "RunStatus": RunStatus(
        run_id="grpo-0123456789ab",
        kind="grpo",
        state="running",
        step=3,
        policy_version=3,
        checkpoint="/runs/grpo-0123456789ab/checkpoints/step-3",
        pid=4242,
        updated_at=datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
    ),
    "SFTRunRequest": SFTRunRequest(dataset=Path("/data/gold"), max_steps=100, seed=7),
    "GRPORunRequest": GRPORunRequest(
        base_model="/runs/sft-0123456789ab/final",
        group_size=8,
        batch_groups=4,
        buffer_groups=3,
        max_steps=10,
        group_start="new",
        num_processes=2,
    ),
}


def published(name: str) -> Any:
    schema = json.loads((SCHEMA_DIR / f"trainer.{name}.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def test_every_published_contract_has_an_example() -> None:
    assert set(EXAMPLES) == set(TRAINER_CONTRACTS)
    for name, example in EXAMPLES.items():
        assert type(example) is TRAINER_CONTRACTS[name]


@pytest.mark.parametrize("name", sorted(TRAINER_CONTRACTS))
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


def test_the_run_configs_take_every_knob_of_the_requests_as_the_requests_do(
    tmp_path: Path,
) -> None:
    for options, config in ((SFTOptions, SFTRunConfig), (GRPOOptions, GRPOConfig)):
        for name, field in options.model_fields.items():
            assert repr(config.model_fields[name]) == repr(field), name  # default, limits
    sft = SFTRunConfig(dataset=tmp_path, run_dir=tmp_path)
    assert sft.model_dump(exclude={"run_dir"}) == SFTRunRequest(dataset=tmp_path).model_dump()
    grpo = GRPOConfig(run_dir=tmp_path)
    chosen = {"redis_url", "policy_server_url", "num_processes"}
    assert grpo.model_dump(exclude={"run_dir", *chosen}) == GRPORunRequest().model_dump(
        exclude=chosen
    )
    assert (grpo.redis_url, grpo.policy_server_url, grpo.num_processes) == (
        "redis://127.0.0.1:6379/0",
        "",
        1,
    )
    assert GRPORunRequest().model_dump(include=chosen) == dict.fromkeys(chosen)


@pytest.mark.parametrize("request_type", [SFTRunRequest, GRPORunRequest])
def test_a_request_may_not_name_its_run_directory(request_type: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="run_dir is chosen by the service"):
        request_type.model_validate({"dataset": "/data/gold", "run_dir": "/tmp/x"})


def test_grpo_requests_and_configs_keep_the_cross_field_rules(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="buffer_groups must be smaller than batch_groups"):
        GRPORunRequest(batch_groups=2, buffer_groups=2)
    with pytest.raises(ValidationError, match="heartbeat_s must be smaller than"):
        GRPOConfig(run_dir=tmp_path, heartbeat_s=60.0, collective_timeout_s=60.0)
    with pytest.raises(ValidationError, match="num_processes"):
        GRPORunRequest(num_processes=0)
