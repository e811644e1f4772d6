"""The contracts of synth's API (``astra_proto.api.synth``) beyond what
tests/proto/test_contracts.py checks of every contract: the job requests keep their
cross-field rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from astra_proto import ToolSpec
from astra_proto.api.synth import (
    EmulatedServer,
    EmulateRequest,
    EnvironmentJobRequest,
    PastCall,
    TrajectorySettings,
)


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
