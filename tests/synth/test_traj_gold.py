"""The offline path for real: procedural environments' reference solutions played on a real
envhost (bubblewrap sandbox) over MCP, verified, and exported as a dataset `datasets` reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import datasets  # type: ignore[import-untyped]
import pytest
from http_support import running

from astra_common.db import Database
from astra_envhost.app import create_app
from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    EnvironmentSpec,
    ReferenceCall,
    StageProgress,
    SubQuestion,
    SyntheticTool,
    ToolSpec,
)
from astra_proto.answers import output_holds_answer
from astra_synth.procedural import generate_environments
from astra_synth.trajectories import GoldError, gold_dataset, gold_plan, gold_trajectory

Settings = Callable[..., EnvhostSettings]

needs_sandbox = pytest.mark.skipif(
    find_bwrap() is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
)


@asynccontextmanager
async def envhost_with(settings: EnvhostSettings, *specs: EnvironmentSpec) -> AsyncIterator[str]:
    """Register ``specs`` in the settings' database, then serve a real envhost."""
    async with Database(settings.database_url) as database, database.transaction() as repos:
        for spec in specs:
            await repos.environments.register(spec)
    async with running(create_app(settings), settings.port) as url:
        yield url


def mixed_specs() -> list[EnvironmentSpec]:
    """Every scenario type, all five domains, chains up to 5 hops."""
    return [
        *generate_environments(8, 61),
        *generate_environments(2, 62, hops=[4, 5], scenario_types=["parallel_multi_hop"]),
    ]


def test_plan_orders_calls_by_dependency_and_groups_independent_ones() -> None:
    specs = [*mixed_specs(), *generate_environments(30, 63)]
    saw_parallel = False
    for spec in specs:
        rounds = gold_plan(spec)
        by_id = {q.id: q for q in spec.sub_questions}
        round_of = {qid: i for i, r in enumerate(rounds) for c in r for qid in c.sub_question_ids}
        # every tool-needing sub-question is answered exactly once
        assert sorted(round_of) == sorted(q.id for q in spec.sub_questions if q.tool_name)
        for qid, index in round_of.items():
            for dep in by_id[qid].depends_on:
                if by_id[dep].tool_name is not None:
                    assert round_of[dep] < index  # a dependency is answered in an earlier round
        # a round is as early as possible: something in the previous round is needed
        for qid, index in round_of.items():
            deps = [round_of[d] for d in by_id[qid].depends_on if d in round_of]
            assert index == (max(deps) + 1 if deps else 0)
        saw_parallel |= any(len(r) > 1 for r in rounds)
        assert len(rounds) <= spec.hops
    assert saw_parallel


def test_plan_refuses_specs_without_a_reference_solution() -> None:
    (spec,) = generate_environments(1, 64, scenario_types=["single_hop"])
    tool = spec.tools[0]
    bare = EnvironmentSpec(
        task=spec.task,
        answer=spec.answer,
        domain=spec.domain,
        sub_questions=spec.sub_questions,
        tools=[tool.model_copy(update={"reference_calls": []})],
    )
    with pytest.raises(GoldError, match="no_reference_solution"):
        gold_plan(bare)


def wrong_answer_spec() -> EnvironmentSpec:
    """An environment whose tool does not return the sub-answer its DAG claims."""
    return EnvironmentSpec(
        task="What is the population of Lyon?",
        answer="516092",
        domain="testing",
        scenario_type="single_hop",
        sub_questions=[
            SubQuestion(id="q1", question="Population of Lyon?", answer="516092", tool_name="pop")
        ],
        tools=[
            SyntheticTool(
                spec=ToolSpec(
                    name="pop",
                    description="Population of a city.",
                    parameters={
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                ),
                code="def pop(city):\n    return {'city': city, 'population': 1}\n",
                entrypoint="pop",
                reference_calls=[
                    ReferenceCall(
                        tool_name="pop",
                        arguments={"city": "Lyon"},
                        sub_question_id="q1",
                        expected_answer="516092",
                    )
                ],
            )
        ],
    )


@pytest.mark.integration
@needs_sandbox
async def test_gold_dataset_is_played_for_real_and_verified(
    envhost_settings: Settings, tmp_path: Path
) -> None:
    specs = mixed_specs()
    broken = wrong_answer_spec()
    updates: list[StageProgress] = []
    told: list[tuple[str, str, str | None]] = []

    def on_reject(
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        told.append((stage, reason, item))

    async with envhost_with(envhost_settings(), *specs, broken) as base:
        manifest = await gold_dataset(
            [*specs, broken],
            envhost_url=base,
            out_dir=tmp_path / "gold",
            progress=updates.append,
            concurrency=3,
            on_reject=on_reject,
        )
    assert manifest.stats.records == len(specs)
    assert manifest.rejected == {"answer_missing": 1}
    # done counts the kept ones: with the rejection, every environment is accounted for once
    assert updates[-1].done == len(specs)
    assert updates[-1].done + sum(updates[-1].rejected.values()) == updates[-1].total
    assert told == [("gold_trajectories", "answer_missing", f"{broken.id}: {broken.task}")]
    assert manifest.stats.parallel_call_messages > 0
    assert set(manifest.stats.by_domain) == {
        "real_estate", "ecommerce", "healthcare", "travel", "finance"
    }  # fmt: skip

    loaded = datasets.load_dataset(
        str(tmp_path / "gold"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert len(loaded) == len(specs)
    by_env = {spec.id: spec for spec in specs}
    for row in loaded:
        spec = by_env[row["env_id"]]
        assert row["score"] == pytest.approx(1.0, abs=1e-5)  # envhost's F1
        assert row["source"] == "gold"
        messages = row["messages"]
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        assert messages[1]["content"] == spec.task
        assert messages[-1]["role"] == "assistant"
        assert spec.answer in messages[-1]["content"]
        tools = json.loads(row["tools"])
        assert sorted(t["function"]["name"] for t in tools) == sorted(spec.tool_names())
        # every tool message is a real output, holding the sub-answer of its call
        expected = {
            (c.tool_name, json.dumps(c.arguments, sort_keys=True)): c.expected_answer
            for t in spec.tools
            for c in t.reference_calls
        }
        calls = {
            call["id"]: call["function"]
            for m in messages
            if m["role"] == "assistant"
            for call in m["tool_calls"] or []
        }
        tool_messages = [m for m in messages if m["role"] == "tool"]
        assert len(tool_messages) == len(calls) > 0
        for message in tool_messages:
            function = calls[message["tool_call_id"]]
            key = (function["name"], json.dumps(json.loads(function["arguments"]), sort_keys=True))
            answer = expected[key]
            assert answer is not None
            assert output_holds_answer(json.loads(message["content"]), answer)


@pytest.mark.integration
@needs_sandbox
async def test_episode_mode_carries_envhost_reward_and_env_mode_works_too(
    envhost_settings: Settings,
) -> None:
    specs = generate_environments(2, 65, scenario_types=["parallel_single_hop"], hops=[1])
    async with envhost_with(envhost_settings(), *specs) as base:
        scored = await gold_trajectory(specs[0], envhost_url=base)
        direct = await gold_trajectory(specs[1], envhost_url=base, mode="env")
        with pytest.raises(GoldError, match="envhost_error"):
            await gold_trajectory(wrong_answer_spec(), envhost_url=base)  # not registered
    assert scored.reward is not None
    assert scored.reward.f1 == pytest.approx(1.0, abs=1e-5)
    assert scored.reward.final_answer_correct is True
    assert scored.episode_id is not None
    assert direct.reward is None
    first = direct.messages[2]
    assert first.role == "assistant"
    assert first.tool_calls is not None
    assert len(first.tool_calls) == len(gold_plan(specs[1])[0]) >= 2  # issued in parallel
