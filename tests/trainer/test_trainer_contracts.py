"""The contracts of the trainer's API (``astra_proto.api.trainer``) beyond what
tests/proto/test_contracts.py checks of every contract: the run configs are the requests'
knobs plus what the service chooses, and the cross-field rules hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from astra_proto.api.trainer import (
    GRPOOptions,
    GRPORunRequest,
    SFTOptions,
    SFTRunRequest,
)
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.sft import SFTRunConfig


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
