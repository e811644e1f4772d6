"""Every wire contract round-trips, forbids unknown fields and matches its published schema."""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import envhost_contract_examples
import jsonschema
import pytest
import rollout_contract_examples
import synth_contract_examples
import trainer_contract_examples
from pydantic import BaseModel, ValidationError

import astra_proto
import astra_proto.api
from astra_proto import (
    SCHEMA_VERSION,
    BuiltinBackend,
    CallOutcome,
    ContractModel,
    DistractorRef,
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    EpisodeState,
    ExecutionCall,
    ExecutionRequest,
    ExecutionResult,
    FinishReason,
    FunctionCall,
    JobKind,
    JobRejection,
    JobRejectionPage,
    JobState,
    Message,
    PolicyPointer,
    Provenance,
    ReferenceCall,
    ReplayRecord,
    RewardBreakdown,
    ScenarioType,
    ScoreRequest,
    StageProgress,
    StreamEnvelope,
    SubQuestion,
    SynthesisJob,
    SyntheticTool,
    Timings,
    ToolCall,
    ToolCallRecord,
    ToolSpec,
    Trajectory,
    VerificationCertificate,
    sha256_hex,
)
from astra_proto.schemas import CONTRACTS, main, render_all, stale_files

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "proto" / "schemas"
T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)

# --- builders: one realistic instance of every contract ------------------------------------


def weather_spec() -> ToolSpec:
    return ToolSpec(
        name="get_weather",
        description="Current weather of a city.",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"],
        },
        output_schema={"type": "object", "properties": {"temp": {"type": "number"}}},
        domain="weather",
    )


def weather_call() -> ReferenceCall:
    return ReferenceCall(
        tool_name="get_weather",
        arguments={"city": "Paris"},
        sub_question_id="q1",
        expected_answer="21",
    )


def weather_tool() -> SyntheticTool:
    return SyntheticTool(
        spec=weather_spec(),
        code="def get_weather(city, unit='C'):\n    return {'temp': 21}\n",
        entrypoint="get_weather",
        reference_calls=[weather_call()],
    )


def sub_questions() -> list[SubQuestion]:
    return [
        SubQuestion(
            id="q1",
            question="What is the temperature in Paris?",
            answer="21",
            tool_name="get_weather",
        ),
        SubQuestion(
            id="q2", question="Is 21 °C warm?", answer="yes", depends_on=["q1"], tool_name=None
        ),
    ]


def replay() -> ReplayRecord:
    output = {"temp": 21}
    return ReplayRecord(
        call=weather_call(), output=output, output_sha256=sha256_hex(output), answer_found=True
    )


def environment(with_certificate: bool = True) -> EnvironmentSpec:
    spec = EnvironmentSpec(
        task="Is it warm in Paris right now?",
        answer="yes",
        domain="weather",
        scenario_type=ScenarioType.MULTI_HOP,
        sub_questions=sub_questions(),
        tools=[weather_tool()],
        provenance=Provenance(source="qa", job_id="job-1", seed=7, generator="m", created_at=T0),
    )
    if not with_certificate:
        return spec
    return EnvironmentSpec.model_validate(
        spec.model_dump() | {"certificate": certificate(spec.id).model_dump()}
    )


def certificate(env_id: str = "env_" + "0" * 32) -> VerificationCertificate:
    return VerificationCertificate(
        env_id=env_id, replays=[replay()], passed=True, verifier_version="1", verified_at=T0
    )


def reward() -> RewardBreakdown:
    return RewardBreakdown.compute(n_subquestions=2, solved_ids=["q1"], n_calls=2)


def call_record() -> ToolCallRecord:
    return ToolCallRecord(
        seq=0,
        tool_name="get_weather",
        arguments={"city": "Paris"},
        result={"temp": 21},
        latency_ms=3.5,
        at=T0,
    )


def episode() -> Episode:
    distractor = ToolSpec(name="get_stock_price", description="Price of a stock ticker.")
    return Episode(
        id="ep-1",
        env_id="env_" + "a" * 32,
        seed=3,
        state=EpisodeState.SCORED,
        mcp_url="http://envhost:8000/episodes/ep-1/mcp",
        tools=[weather_spec(), distractor],
        distractor_tools=["get_stock_price"],
        calls=[call_record()],
        reward=reward(),
        created_at=T0,
        last_active_at=T0 + timedelta(seconds=4),
    )


def tool_call() -> ToolCall:
    return ToolCall(
        id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')
    )


def conversation() -> list[Message]:
    return [
        Message(role="system", content="You can call tools."),
        Message(role="user", content="Is it warm in Paris right now?"),
        Message(role="assistant", content=None, tool_calls=[tool_call()]),
        Message(role="tool", content='{"temp": 21}', tool_call_id="call_1", name="get_weather"),
        Message(role="assistant", content="Yes, 21 °C."),
    ]


def timings() -> Timings:
    return Timings(
        started_at=T0, finished_at=T0 + timedelta(seconds=2), llm_seconds=1.5, tool_seconds=0.1
    )


def trajectory(**overrides: Any) -> Trajectory:
    fields: dict[str, Any] = {
        "id": "traj-1",
        "env_id": "env_" + "a" * 32,
        "episode_id": "ep-1",
        "group_id": "group-1",
        "policy_version": 4,
        "model": "SmolLM2-135M-Instruct",
        "messages": conversation(),
        "tools": episode().tools,
        "distractor_tools": ["get_stock_price"],
        "token_ids": [1, 2, 3, 4],
        "logprobs": [0.0, 0.0, -0.25, -1.5],
        "loss_mask": [0, 0, 1, 1],
        "text_only": False,
        "reward": reward(),
        "finish_reason": FinishReason.FINAL_ANSWER,
        "turns": 2,
        "timings": timings(),
        "metadata": {"temperature": 1.0},
    }
    return Trajectory(**(fields | overrides))


def envelope() -> StreamEnvelope[Trajectory]:
    return StreamEnvelope[Trajectory](
        record_id="traj-1", produced_at=T0, producer="rollout/0", payload=trajectory()
    )


def synthesis_job() -> SynthesisJob:
    return SynthesisJob(
        id="job-1",
        kind=JobKind.ENVIRONMENTS,
        state=JobState.RUNNING,
        params={"source": "qa", "count": 10},
        progress=[StageProgress(stage="decompose", done=4, total=10, rejected={"quality": 1})],
        created_at=T0,
        updated_at=T0 + timedelta(minutes=1),
    )


def job_rejection() -> JobRejection:
    return JobRejection(
        stage="decomposed",
        reason="unparseable_decomposition",
        item="item 0: Is it raining?",
        message="the reply is not JSON",
        excerpt="Sure! Here is",
        at=T0,
    )


EXAMPLES: dict[str, BaseModel] = {
    "BuiltinBackend": BuiltinBackend(name="bfcl", config={"category": "multi_turn_base"}),
    "EnvironmentSpec": environment(),
    "DistractorRef": DistractorRef(env_id="env_" + "a" * 32, tool_name="get_weather"),
    "Episode": episode(),
    "ExecutionCall": ExecutionCall(tool_name="get_weather", arguments={"city": "Paris"}),
    "ExecutionRequest": ExecutionRequest(
        tools=[weather_tool()],
        calls=[ExecutionCall(tool_name="get_weather", arguments={"city": "Paris"})],
    ),
    "CallOutcome": CallOutcome(tool_name="get_weather", output={"temp_c": 21}, latency_ms=0.4),
    "ExecutionResult": ExecutionResult(
        outcomes=[CallOutcome(tool_name="get_weather", error="KeyError: 'x'", latency_ms=0.2)]
    ),
    "EpisodeRequest": EpisodeRequest(
        env_id="env_" + "b" * 32,
        seed=7,
        distractors=[DistractorRef(env_id="env_" + "a" * 32, tool_name="get_weather")],
    ),
    "FunctionCall": tool_call().function,
    "JobRejection": job_rejection(),
    "JobRejectionPage": JobRejectionPage(job_id="job-1", total=1, items=[job_rejection()]),
    "Message": conversation()[2],
    "PolicyPointer": PolicyPointer(
        version=4, checkpoint_uri="file:///ckpt/4", base_model="m", served_model="m", updated_at=T0
    ),
    "Provenance": Provenance(source="procedural", seed=1, created_at=T0),
    "ReferenceCall": weather_call(),
    "ReplayRecord": replay(),
    "ScoreRequest": ScoreRequest(final_answer="It is 21 degrees in Paris."),
    "RewardBreakdown": reward(),
    "StageProgress": StageProgress(stage="verify", done=2),
    "StreamEnvelope": envelope(),
    "SubQuestion": sub_questions()[0],
    "SynthesisJob": synthesis_job(),
    "SyntheticTool": weather_tool(),
    "Timings": timings(),
    "ToolCall": tool_call(),
    "ToolCallRecord": call_record(),
    "ToolSpec": weather_spec(),
    "Trajectory": trajectory(),
    "VerificationCertificate": certificate(),
}
"""One example per model exported by ``astra_proto``, keyed by its exported name."""

SERVICE_EXAMPLES = {
    "envhost": envhost_contract_examples.EXAMPLES,
    "synth": synth_contract_examples.EXAMPLES,
    "rollout": rollout_contract_examples.EXAMPLES,
    "trainer": trainer_contract_examples.EXAMPLES,
}
API_EXAMPLES: dict[str, BaseModel] = {
    f"{service}.{name}": example
    for service, examples in SERVICE_EXAMPLES.items()
    for name, example in examples.items()
}
"""One example per published contract of ``astra_proto.api.<service>``, keyed as its schema
file is named (``<service>.<Model>``); each lives beside its service's tests."""

ALL_EXAMPLES = EXAMPLES | API_EXAMPLES

NOT_CONTRACTS = {"ContractModel"}  # the base class: no fields, never sent on its own


def exported_models() -> set[str]:
    return {
        name
        for name in astra_proto.__all__
        if inspect.isclass(obj := getattr(astra_proto, name)) and issubclass(obj, BaseModel)
    }


def example_for(model: type[BaseModel]) -> BaseModel:
    (match,) = [e for e in EXAMPLES.values() if type(e) is model]
    return match


# --- round trip and strictness -------------------------------------------------------------


def test_every_exported_model_has_an_example() -> None:
    assert exported_models() - NOT_CONTRACTS == set(EXAMPLES)
    for name, example in EXAMPLES.items():
        assert isinstance(example, getattr(astra_proto, name))


def test_every_published_api_contract_has_an_example() -> None:
    assert set(SERVICE_EXAMPLES) == set(astra_proto.api.SERVICES)
    for service, examples in SERVICE_EXAMPLES.items():
        contracts = importlib.import_module(f"astra_proto.api.{service}").CONTRACTS
        assert set(examples) == set(contracts), service
        for name, example in examples.items():
            assert type(example) is contracts[name], (service, name)


def test_every_model_in_the_package_is_a_strict_contract() -> None:
    modules = [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(astra_proto.__path__, prefix="astra_proto.")
    ]
    models = {
        obj
        for module in modules
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__.startswith("astra_proto")
    }
    assert models, "no models found"
    for model in models:
        assert issubclass(model, ContractModel), model
        assert model.model_config.get("extra") == "forbid", model


@pytest.mark.parametrize("name", sorted(ALL_EXAMPLES))
def test_round_trip(name: str) -> None:
    example = ALL_EXAMPLES[name]
    model = type(example)
    text = example.model_dump_json()
    assert model.model_validate_json(text) == example
    assert model.model_validate(example.model_dump(mode="json")) == example
    assert model.model_validate(json.loads(text)) == example
    # A second trip writes the same bytes: ids and idempotency keys survive relays.
    assert model.model_validate_json(text).model_dump_json() == text


@pytest.mark.parametrize("name", sorted(ALL_EXAMPLES))
def test_unknown_top_level_field_is_rejected(name: str) -> None:
    example = ALL_EXAMPLES[name]
    data = example.model_dump(mode="json") | {"unexpected": 1}
    with pytest.raises(ValidationError) as info:
        type(example).model_validate(data)
    assert [e["type"] for e in info.value.errors()] == ["extra_forbidden"]


NESTED_PATHS: list[tuple[str, tuple[str | int, ...]]] = [
    ("EnvironmentSpec", ("tools", 0)),
    ("EnvironmentSpec", ("tools", 0, "spec")),
    ("EnvironmentSpec", ("tools", 0, "reference_calls", 0)),
    ("EnvironmentSpec", ("sub_questions", 1)),
    ("EnvironmentSpec", ("provenance",)),
    ("EnvironmentSpec", ("certificate",)),
    ("EnvironmentSpec", ("certificate", "replays", 0)),
    ("Episode", ("calls", 0)),
    ("Episode", ("reward",)),
    ("SynthesisJob", ("progress", 0)),
    ("Trajectory", ("messages", 2, "tool_calls", 0)),
    ("Trajectory", ("messages", 2, "tool_calls", 0, "function")),
    ("Trajectory", ("timings",)),
    ("StreamEnvelope", ("payload",)),
    ("StreamEnvelope", ("payload", "messages", 0)),
]


@pytest.mark.parametrize(("name", "path"), NESTED_PATHS)
def test_unknown_nested_field_is_rejected(name: str, path: tuple[str | int, ...]) -> None:
    example = EXAMPLES[name]
    data = example.model_dump(mode="json")
    node: Any = data
    for key in path:
        node = node[key]
    node["unexpected"] = 1
    with pytest.raises(ValidationError, match="unexpected"):
        type(example).model_validate(data)


# --- JSON Schemas ---------------------------------------------------------------------------


def test_published_schemas_are_fresh() -> None:
    assert stale_files(SCHEMA_DIR) == [], "run `python -m astra_proto.schemas write proto/schemas`"


def test_design_contracts_are_published() -> None:
    required = {
        "ToolSpec",
        "SyntheticTool",
        "SubQuestion",
        "EnvironmentSpec",
        "Episode",
        "Message",
        "ToolCall",
        "Trajectory",
        "RewardBreakdown",
        "SynthesisJob",
        "TrajectoryEnvelope",
    }
    assert required <= set(CONTRACTS)


def test_stale_files_reports_changed_missing_and_extra_files(tmp_path: Path) -> None:
    assert main(["write", str(tmp_path)]) == 0
    assert stale_files(tmp_path) == []
    assert main(["check", str(tmp_path)]) == 0

    changed = tmp_path / "ToolSpec.json"
    changed.write_text(changed.read_text().replace('"object"', '"array"', 1))
    (tmp_path / "Message.json").unlink()
    (tmp_path / "Retired.json").write_text("{}\n")
    assert sorted(stale_files(tmp_path)) == ["Message.json", "Retired.json", "ToolSpec.json"]
    assert main(["check", str(tmp_path)]) == 1

    assert main(["write", str(tmp_path)]) == 0  # rewrites and drops what is no longer generated
    assert stale_files(tmp_path) == []
    assert not (tmp_path / "Retired.json").exists()


def test_check_of_a_missing_directory_fails(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "absent")]) == 1


@pytest.mark.parametrize("argv", [[], ["check"], ["lint", "x"], ["write", "a", "b"]])
def test_schema_cli_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage" in capsys.readouterr().err


def published_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return schema


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_published_schema_validates_an_instance(name: str) -> None:
    schema = published_schema(name)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    example = API_EXAMPLES[name] if name in API_EXAMPLES else example_for(CONTRACTS[name])
    instance = example.model_dump(mode="json")
    validator.validate(instance)
    # The schema forbids what the model forbids.
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(instance | {"unexpected": 1})


def test_every_model_schema_forbids_additional_properties() -> None:
    for name, text in render_all().items():
        schema = json.loads(text)
        objects = [schema, *schema.get("$defs", {}).values()]
        for obj in objects:
            if "properties" in obj:
                assert obj.get("additionalProperties") is False, (name, obj.get("title"))


# --- chat messages --------------------------------------------------------------------------


def test_message_accepts_the_openai_wire_shape() -> None:
    openai_message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    message = Message.model_validate(openai_message)
    assert message.model_dump(exclude_none=True) == {
        k: v for k, v in openai_message.items() if v is not None
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"role": "tool", "content": "21"}, "tool messages need tool_call_id"),
        ({"role": "user", "content": "hi", "tool_calls": [tool_call()]}, "only assistant"),
        (
            {"role": "tool", "content": "x", "tool_calls": [tool_call()], "tool_call_id": "c"},
            "only assistant",
        ),
        ({"role": "assistant", "content": "x", "tool_call_id": "call_1"}, "only tool messages"),
        ({"role": "system"}, "system messages need content"),
        ({"role": "user", "content": None}, "user messages need content"),
        ({"role": "developer", "content": "x"}, "role"),
    ],
)
def test_message_shape_follows_role(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Message.model_validate(fields)


def test_message_shapes_accepted() -> None:
    assert Message(role="assistant", tool_calls=[tool_call()]).content is None
    assert Message(role="assistant", content="done", tool_calls=[]).tool_calls == []
    assert Message(role="tool", content="{}", tool_call_id="call_1").name is None


def test_function_call_arguments() -> None:
    assert tool_call().function.parsed_arguments() == {"city": "Paris"}
    assert FunctionCall(name="f").parsed_arguments() == {}
    assert FunctionCall(name="f", arguments="").parsed_arguments() == {}
    with pytest.raises(ValueError, match="not valid JSON"):
        FunctionCall(name="f", arguments="{city: Paris").parsed_arguments()
    with pytest.raises(ValueError, match="JSON object"):
        FunctionCall(name="f", arguments="[1, 2]").parsed_arguments()
    with pytest.raises(ValueError, match="JSON object"):
        FunctionCall(name="f", arguments='"Paris"').parsed_arguments()


# --- trajectories ---------------------------------------------------------------------------


def test_text_only_trajectory_has_no_token_arrays() -> None:
    plain = trajectory(token_ids=None, logprobs=None, loss_mask=None, text_only=True)
    assert plain.token_ids is None
    with pytest.raises(ValidationError, match="text-only"):
        trajectory(text_only=True)
    with pytest.raises(ValidationError, match="text-only"):
        trajectory(text_only=True, token_ids=[1], logprobs=None, loss_mask=None)


@pytest.mark.parametrize(
    ("arrays", "error"),
    [
        ({"logprobs": None}, "go together"),
        ({"token_ids": None, "logprobs": None, "loss_mask": None}, "go together"),
        ({"logprobs": [0.0, -1.0, -2.0]}, "one length"),
        ({"loss_mask": [0, 1, 1, 1, 1]}, "one length"),
        ({"loss_mask": [0, 1, 2, 1]}, "only 0 and 1"),
        ({"loss_mask": [0, 1, -1, 1]}, "only 0 and 1"),
        ({"logprobs": [0.0, math.nan, -1.0, -1.0]}, "finite"),
        ({"logprobs": [0.0, -math.inf, -1.0, -1.0]}, "finite"),
    ],
)
def test_token_arrays_are_aligned(arrays: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        trajectory(**arrays)


def test_failed_trajectory_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="failure_reason"):
        trajectory(finish_reason=FinishReason.ERROR)
    failed = trajectory(finish_reason=FinishReason.ERROR, failure_reason="policy server 503")
    assert Trajectory.model_validate_json(failed.model_dump_json()) == failed


def test_trajectory_counts_are_non_negative() -> None:
    with pytest.raises(ValidationError):
        trajectory(policy_version=-1)
    with pytest.raises(ValidationError):
        trajectory(turns=-1)
    with pytest.raises(ValidationError):
        trajectory(timings=timings().model_copy(update={"llm_seconds": -1.0}).model_dump())


# --- stream envelopes -----------------------------------------------------------------------


def test_envelope_payload_is_typed() -> None:
    text = envelope().model_dump_json()
    decoded = StreamEnvelope[Trajectory].model_validate_json(text)
    assert isinstance(decoded.payload, Trajectory)
    assert decoded.payload == trajectory()
    assert decoded.schema_version == SCHEMA_VERSION


def test_envelope_rejects_a_payload_of_another_contract() -> None:
    pointer = EXAMPLES["PolicyPointer"].model_dump(mode="json")
    with pytest.raises(ValidationError, match="payload"):
        StreamEnvelope[Trajectory].model_validate({"record_id": "r", "payload": pointer})


def test_envelope_rejects_an_unsupported_schema_version() -> None:
    data = envelope().model_dump(mode="json") | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ValidationError) as info:
        StreamEnvelope[Trajectory].model_validate(data)
    message = str(info.value)
    assert f"unsupported schema_version {SCHEMA_VERSION + 1}" in message
    assert f"this reader speaks {SCHEMA_VERSION}" in message


@pytest.mark.parametrize("record_id", [None, ""])
def test_envelope_needs_a_record_id(record_id: str | None) -> None:
    data = envelope().model_dump(mode="json")
    if record_id is None:
        del data["record_id"]
    else:
        data["record_id"] = record_id
    with pytest.raises(ValidationError, match="record_id"):
        StreamEnvelope[Trajectory].model_validate(data)


def test_envelope_stamps_an_aware_time() -> None:
    stamped = StreamEnvelope[PolicyPointer](record_id="p-4", payload=EXAMPLES["PolicyPointer"])
    assert stamped.produced_at.tzinfo is not None


# --- tool specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"type": "array", "items": {}}, "type 'object'"),
        ({"properties": {}}, "type 'object'"),
        ({"type": "object", "properties": ["city"]}, "properties must be an object"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required"),
        ({"type": "object", "required": ["a"]}, "required"),
        ({"type": "object", "properties": {"a": {}}, "required": "a"}, "required"),
    ],
)
def test_tool_parameters_must_be_an_object_schema(parameters: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ToolSpec(name="f", description="d", parameters=parameters)


def test_tool_parameters_default_to_no_arguments() -> None:
    assert ToolSpec(name="f", description="d").parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    "name", ["get_weather", "_private", "bfcl.math.factorial", "a-b", "x" * 64]
)
def test_tool_name_accepted(name: str) -> None:
    assert ToolSpec(name=name, description="d").name == name


@pytest.mark.parametrize("name", ["", "1tool", "has space", "semi;colon", "x" * 65, "-lead"])
def test_tool_name_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        ToolSpec(name=name, description="d")


def test_tool_needs_a_description() -> None:
    with pytest.raises(ValidationError, match="description"):
        ToolSpec(name="f", description="")


def test_tool_to_openai() -> None:
    spec = weather_spec()
    assert spec.to_openai() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": spec.parameters,
        },
    }
    json.dumps(spec.to_openai())  # goes straight into a request body


def test_synthetic_tool_entrypoint_is_an_identifier() -> None:
    with pytest.raises(ValidationError, match="entrypoint"):
        SyntheticTool(spec=weather_spec(), code="x = 1", entrypoint="get-weather")


# --- small contracts ------------------------------------------------------------------------


def test_job_state_terminal() -> None:
    assert {s for s in JobState if s.terminal} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    }


def test_replay_record_hash_is_hex() -> None:
    with pytest.raises(ValidationError, match="output_sha256"):
        ReplayRecord(call=weather_call(), output=1, output_sha256="XYZ", answer_found=True)


def test_reward_breakdown_is_self_consistent() -> None:
    good = reward().model_dump()
    with pytest.raises(ValidationError, match="cannot exceed"):
        RewardBreakdown.model_validate(good | {"n_solved": 3, "solved_ids": []})
    with pytest.raises(ValidationError, match="exactly the solved"):
        RewardBreakdown.model_validate(good | {"solved_ids": ["q1", "q2"]})
    with pytest.raises(ValidationError, match="repeat"):
        RewardBreakdown.model_validate(good | {"n_solved": 2, "solved_ids": ["q1", "q1"]})
    with pytest.raises(ValidationError, match="precision"):
        RewardBreakdown.model_validate(good | {"precision": 1.5})
