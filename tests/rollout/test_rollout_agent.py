"""The agent loop against a real envhost (sandboxed tools) and a scripted policy server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from envhost_support import weather_spec
from rollout_stub_policy import render, tokenize
from rollout_support import multi_turn_spec, stack

from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, Episode, FinishReason, Trajectory
from astra_proto.api.rollout import EpisodeLimits
from astra_rollout.agent import run_episode

pytestmark = pytest.mark.timeout(120)

Settings = Callable[..., EnvhostSettings]


async def call_log(envhost_url: str, episode_id: str | None) -> Episode:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{envhost_url}/v1/episodes/{episode_id}")
    assert response.status_code == 200, response.text
    return Episode.model_validate(response.json())


async def play(
    database_url: str,
    envhost_settings: Settings,
    script: str,
    spec: EnvironmentSpec | None = None,
    *,
    registered: EnvironmentSpec | None = None,
    **options: Any,
) -> tuple[Trajectory, Episode | None]:
    """One episode of ``spec`` (the weather task by default) with the stub's ``script``, on an
    envhost serving ``registered`` (default: the spec); the trajectory and the call log."""
    spec = spec or weather_spec()
    async with stack(database_url, envhost_settings, registered or spec) as s:
        trajectory = await run_episode(
            spec, policy=s.policy(script), episodes=s.episodes, **options
        )
        log = None
        if trajectory.episode_id is not None:
            log = await call_log(s.envhost_url, trajectory.episode_id)
    return trajectory, log


async def test_solver_episode_is_scored_with_aligned_tokens(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, log = await play(
        database_url, envhost_settings, "solver", policy_version=3, group_id="g"
    )
    assert log is not None
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER, trajectory.failure_reason
    assert trajectory.turns == 3
    assert [m.role for m in trajectory.messages] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant",
    ]  # fmt: skip
    assert json.loads(trajectory.messages[4].content or "{}")["temperature_c"] == 21
    assert trajectory.reward is not None
    assert trajectory.reward.n_solved == 2
    assert trajectory.reward.n_calls == 2
    assert trajectory.reward.f1 == pytest.approx(1.0)
    assert [c.tool_name for c in log.calls] == ["get_city_id", "get_forecast"]
    assert log.state in ("closed", "scored")
    assert {t.name for t in trajectory.tools} == {"get_city_id", "get_forecast"}
    assert trajectory.policy_version == 3
    assert trajectory.group_id == "g"
    # tokens: the last prompt (mask 0) plus the last completion (mask 1), each earlier
    # completion inside it under mask 1
    assert not trajectory.text_only
    assert trajectory.token_ids is not None
    assert trajectory.loss_mask is not None
    wire = [m.model_dump(exclude_none=True) for m in trajectory.messages]
    assert trajectory.token_ids == tokenize("".join(render(m) for m in wire))
    policy_tokens = [
        t for t, m in zip(trajectory.token_ids, trajectory.loss_mask, strict=True) if m == 1
    ]
    expected = [t for m in wire if m["role"] == "assistant" for t in tokenize(render(m))]
    assert policy_tokens == expected
    assert trajectory.logprobs is not None
    assert {lp for lp, m in zip(trajectory.logprobs, trajectory.loss_mask, strict=True) if m} == {
        -0.5
    }
    Trajectory.model_validate_json(trajectory.model_dump_json())


async def test_parallel_calls_in_one_turn_are_answered_in_order(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, log = await play(database_url, envhost_settings, "parallel")
    assert log is not None
    tool_messages = [m for m in trajectory.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == ["p1", "p2"]
    assert [json.loads(m.content or "")["city_id"] for m in tool_messages] == ["c-75", "c-69"]
    assert sorted(c.arguments["name"] for c in log.calls) == ["Lyon", "Paris"]
    assert trajectory.metadata["tool_calls"] == 2
    assert trajectory.reward is not None
    assert trajectory.reward.n_calls == 2


async def test_raw_tool_call_text_is_parsed_and_trajectory_is_text_only(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, _ = await play(database_url, envhost_settings, "raw_text")
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER
    assert trajectory.metadata["calls_parsed_from_text"] == 2
    first = trajectory.messages[1]
    assert first.content == "Let me look."
    assert first.tool_calls is not None
    assert first.tool_calls[0].function.name == "get_city_id"
    assert trajectory.reward is not None
    assert trajectory.reward.n_solved == 2
    assert trajectory.text_only
    assert trajectory.token_ids is None
    assert "no token ids" in trajectory.metadata["token_recording"]


async def test_malformed_calls_get_an_error_back_and_are_not_run(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, log = await play(database_url, envhost_settings, "malformed")
    assert log is not None
    errors = [m.content or "" for m in trajectory.messages if m.role == "tool"]
    assert len(errors) == 2
    assert errors[0].startswith("Error: tool call is not valid JSON")
    assert errors[1].startswith("Error: tool call arguments are not valid JSON")
    assert log.calls == []
    assert trajectory.metadata["malformed_calls"] == 2
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER
    assert trajectory.reward is not None
    assert trajectory.reward.f1 == 0.0


async def test_endless_calls_stop_at_the_turn_limit(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, _ = await play(
        database_url, envhost_settings, "endless", limits=EpisodeLimits(max_turns=4)
    )
    assert trajectory.finish_reason == FinishReason.TURN_LIMIT
    assert trajectory.turns == 4
    assert trajectory.reward is not None
    assert trajectory.reward.n_calls == 4
    assert trajectory.reward.n_solved == 1


async def test_token_budget_stops_the_episode(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, _ = await play(
        database_url, envhost_settings, "endless", limits=EpisodeLimits(token_budget=400)
    )
    assert trajectory.finish_reason == FinishReason.TOKEN_BUDGET
    assert 1 <= trajectory.turns < 32


async def test_server_errors_are_retried_then_succeed(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, _ = await play(database_url, envhost_settings, "flaky")
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER
    assert trajectory.metadata["policy_retries"] == 6  # two 503s before each of three turns
    assert trajectory.reward is not None
    assert trajectory.reward.f1 == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("script", "needle"), [("broken", "after 4 attempts"), ("bad_request", "HTTP 400")]
)
async def test_policy_failure_gives_a_failed_trajectory_and_closes_the_episode(
    database_url: str, envhost_settings: Settings, script: str, needle: str
) -> None:
    trajectory, log = await play(database_url, envhost_settings, script)
    assert log is not None
    assert trajectory.finish_reason == FinishReason.ERROR
    assert trajectory.failure_reason is not None
    assert needle in trajectory.failure_reason
    assert "PolicyError" in trajectory.failure_reason
    assert trajectory.reward is None
    assert trajectory.text_only
    assert log.state == "closed"


async def test_unknown_environment_fails_with_envhost_reason(
    database_url: str, envhost_settings: Settings
) -> None:
    unregistered = weather_spec(domain="elsewhere")
    trajectory, _ = await play(
        database_url, envhost_settings, "solver", unregistered, registered=weather_spec()
    )
    assert trajectory.finish_reason == FinishReason.ERROR
    assert "HTTP 404" in (trajectory.failure_reason or "")
    assert trajectory.episode_id is None


async def test_prompt_that_does_not_extend_falls_back_to_text_only(
    database_url: str, envhost_settings: Settings
) -> None:
    trajectory, _ = await play(database_url, envhost_settings, "mismatch")
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER
    assert trajectory.text_only
    assert trajectory.token_ids is None
    assert "turn 2: the prompt does not extend" in trajectory.metadata["token_recording"]


async def test_multi_turn_task_advances_through_envhost(
    database_url: str, envhost_settings: Settings
) -> None:
    spec = multi_turn_spec()
    trajectory, log = await play(database_url, envhost_settings, "answer", spec)
    assert log is not None
    users = [m.content for m in trajectory.messages if m.role == "user"]
    assert users == [spec.task, "And in Lyon?", "Thanks, that is all."]
    assert trajectory.turns == 3
    assert trajectory.metadata["user_turn"] == 2
    assert log.turn == 2
    assert trajectory.finish_reason == FinishReason.FINAL_ANSWER
    assert not trajectory.text_only  # user turns are mask-0 tokens between completions
