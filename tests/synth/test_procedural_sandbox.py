"""Procedural environments executed for real: envhost's bubblewrap sandbox replays every
reference call, certificates pass and verify, and bad arguments give clear tool errors."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from astra_envhost.backends import ToolExecutionError
from astra_envhost.sandbox import SandboxBackend, SandboxLimits, find_bwrap
from astra_proto import EnvironmentSpec
from astra_proto.answers import output_holds_answer
from astra_synth.procedural import (
    abuild_certificate,
    attach_certificate,
    averify_certificate,
    build_certificate,
    generate_environments,
    verify_certificate,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_bwrap() is None,
        reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap",
    ),
]

LIMITS = SandboxLimits(call_timeout_s=5, start_timeout_s=10)
PARALLEL = 4
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@asynccontextmanager
async def sandbox(spec: EnvironmentSpec) -> AsyncIterator[SandboxBackend]:
    backend = SandboxBackend(spec.tools, mode="bubblewrap", limits=LIMITS)
    try:
        yield backend
    finally:
        await backend.close()


def sample() -> list[EnvironmentSpec]:
    """40 environments: every domain x scenario type, both held-out splits, long chains."""
    return [
        *generate_environments(20, 21),
        *generate_environments(5, 22, split="heldout_entities"),
        *generate_environments(5, 23, split="heldout_compositions"),
        *generate_environments(5, 24, hops=[5, 6, 7], scenario_types=["multi_hop"]),
        *generate_environments(5, 25, hops=[4, 5], scenario_types=["parallel_multi_hop"]),
    ]


async def test_every_certificate_replays_in_the_sandbox() -> None:
    specs = sample()
    assert len(specs) == 40
    limit = asyncio.Semaphore(PARALLEL)

    async def certify(spec: EnvironmentSpec) -> None:
        async with limit, sandbox(spec) as backend:
            certificate = await abuild_certificate(spec, backend.call, verified_at=T0)
            assert certificate.passed, [r.output for r in certificate.replays if not r.answer_found]
            assert certificate.env_id == spec.id
            calls = [c for t in spec.tools for c in t.reference_calls]
            assert [r.call for r in certificate.replays] == calls
            for record in certificate.replays:
                assert record.call.expected_answer is not None
                assert output_holds_answer(record.output, record.call.expected_answer)
            certified = attach_certificate(spec, certificate)
            assert certified.id == spec.id
            assert certified.certificate == certificate
            assert await averify_certificate(certified, backend.call) == []

    async with asyncio.timeout(60):
        await asyncio.gather(*(certify(spec) for spec in specs))


async def test_bad_arguments_are_clear_tool_errors() -> None:
    specs = generate_environments(10, 31, hops=[3, 4], scenario_types=["multi_hop"])
    for spec in specs:
        async with sandbox(spec) as backend:
            for tool in spec.tools:
                call = tool.reference_calls[0]
                name = tool.spec.name
                for bogus in bogus_arguments(call.arguments, tool.spec.parameters):
                    with pytest.raises(ToolExecutionError, match=r"^(ValueError|TypeError): "):
                        await backend.call(name, bogus)
                # the worker lives on: the real call still answers
                output = await backend.call(name, dict(call.arguments))
                assert call.expected_answer is not None
                assert output_holds_answer(output, call.expected_answer)


def bogus_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Calls a careless agent might make: unknown ids or keys, wrong types, bad enums."""
    key = schema["required"][0]
    found: list[dict[str, Any]] = [
        {**arguments, key: "XYZ-00000"},
        {**arguments, key: ""},
        {**arguments, key: 12345},
        {**arguments, "unexpected": 1},
    ]
    if key == "amount":
        found = [{**arguments, "amount": "lots"}, {**arguments, "to_currency": "DOUBLOON"},
                 {**arguments, "amount": -5}]  # fmt: skip
    if "sort_by" in arguments:
        found += [{**arguments, "sort_by": "colour"}, {**arguments, "limit": 0},
                  {**arguments, "order": "sideways"}, {**arguments, "limit": "5"}]  # fmt: skip
    if "fields" in schema["properties"]:
        found += [{**arguments, "fields": ["no_such_field"]}, {**arguments, "fields": "all"}]
    return found


async def test_other_keys_never_hold_the_answer() -> None:
    """Calling a lookup with any other key its data knows (the look-alikes among them: a
    near-identical name, a neighbouring id) returns a record without the sub-answer."""
    specs = generate_environments(10, 41, scenario_types=["single_hop"])
    checked = 0
    for spec in specs:
        async with sandbox(spec) as backend:
            (tool,) = spec.tools
            (call,) = tool.reference_calls
            key = tool.spec.parameters["required"][0]
            assert call.expected_answer is not None
            for other in data_keys(tool.code):
                if other.casefold() == str(call.arguments[key]).casefold():
                    continue
                output = await backend.call(tool.spec.name, {**call.arguments, key: other})
                assert not output_holds_answer(output, call.expected_answer)
                checked += 1
    assert checked >= 30


def data_keys(code: str) -> list[str]:
    """The keys of a tool's embedded table (ids, or normalised names)."""
    table = next(node.value for node in ast.parse(code).body if isinstance(node, ast.Assign))
    return [str(key) for key in ast.literal_eval(table)]


async def test_a_broken_environment_fails_its_certificate() -> None:
    (spec,) = generate_environments(1, 51, scenario_types=["multi_hop"], hops=3)

    def failing(name: str, arguments: dict[str, Any]) -> Any:
        raise RuntimeError("envhost is down")

    certificate = build_certificate(spec, failing, verified_at=T0)
    assert not certificate.passed
    assert all(not r.answer_found for r in certificate.replays)
    assert all("envhost is down" in str(r.output) for r in certificate.replays)

    async with sandbox(spec) as backend:
        good = await abuild_certificate(spec, backend.call, verified_at=T0)
    certified = attach_certificate(spec, good)
    problems = verify_certificate(certified, lambda name, arguments: {"nothing": "here"})
    assert any("output hash" in p for p in problems)
    assert any("no longer holds" in p for p in problems)
    assert verify_certificate(spec, failing) == ["the spec carries no certificate"]
