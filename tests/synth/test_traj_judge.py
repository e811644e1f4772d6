"""The seven-part judge (errors reject, cutoff, per-dimension statistics) and the LLM tool
emulator (what it is shown, deterministic failure share, schema errors), with a scripted LLM."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from scripted_chat import ScriptedChat
from test_traj_graph import WEATHER

from astra_proto import FinishReason, FunctionCall, Message, Timings, ToolCall, Trajectory
from astra_synth.llm import LLMRequestRejected, LLMUnavailable
from astra_synth.llm_pipeline.ask import Unparseable
from astra_synth.trajectories.emulator import ToolEmulator, should_fail
from astra_synth.trajectories.judge import DIMENSIONS, Judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def trajectory(trajectory_id: str, rounds: int) -> Trajectory:
    messages = [Message(role="user", content=f"task {trajectory_id}")]
    for i in range(rounds):
        call = ToolCall(
            id=f"c{i}", function=FunctionCall(name="find_city", arguments='{"name": "Oslo"}')
        )
        result = Message(role="tool", tool_call_id=f"c{i}", content='{"city_id": "c1"}')
        messages += [Message(role="assistant", tool_calls=[call]), result]
    messages.append(Message(role="assistant", content="Done."))
    return Trajectory(
        id=trajectory_id, env_id="env_x", policy_version=0, messages=messages,
        tools=WEATHER.tools, finish_reason=FinishReason.FINAL_ANSWER, turns=rounds + 1,
        timings=Timings(started_at=T0, finished_at=T0),
    )  # fmt: skip


def grades(**overrides: Any) -> dict[str, Any]:
    return {**dict.fromkeys(DIMENSIONS, 1), "notes": "", **overrides}


REPLIES: dict[str, Any] = {
    "perfect": grades(),
    "weak": grades(planning=0, final_answer=0.5, call_necessity=0),  # mean 4.5/7 < 0.75
    "single": grades(tool_output_understanding=None, replanning=None),  # one round: allowed
    "null_multi": grades(replanning=None),  # null although there were two rounds: error
    "bad_value": grades(planning=0.7),  # not one of 0, 0.5, 1
    "bad_text": "I think it is good",
    "missing": {k: v for k, v in grades().items() if k != "final_answer"},
    "refused": LLMRequestRejected("too long"),
}


def judge_script(payload: dict[str, Any]) -> Any:
    key = payload["messages"][0]["content"].removeprefix("task ")
    return REPLIES[key]


async def test_judge_scores_rejects_errors_and_reports_dimensions() -> None:
    llm = ScriptedChat({"judge": judge_script})
    rounds = {"single": 1}
    batch = [trajectory(key, rounds.get(key, 2)) for key in REPLIES]
    report = await Judge(llm, cutoff=0.75).judge_batch(batch)
    assert report.kept == ["perfect", "single"]
    assert report.rejected == {"below_cutoff": 1, "judge_error": 5}
    scores = {s.trajectory_id: s.score for s in report.samples}
    assert scores == {"perfect": 1.0, "single": 1.0, "weak": pytest.approx(4.5 / 7)}
    assert report.dimensions["planning"].mean == pytest.approx(2 / 3)
    assert report.dimensions["planning"].counts == {"1.0": 2, "0.0": 1}
    assert report.dimensions["replanning"].counts == {"1.0": 2}  # the null one left out
    # the judge saw the tools and the messages, arguments as JSON strings
    payload = llm.requests[0][1]
    assert [t["function"]["name"] for t in payload["tools"]] == [t.name for t in WEATHER.tools]
    assert payload["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"name": "Oslo"}'

    unavailable = ScriptedChat({"judge": lambda p: LLMUnavailable("down")})
    with pytest.raises(LLMUnavailable):
        await Judge(unavailable).judge_batch([trajectory("perfect", 1)])
    with pytest.raises(ValueError, match="cutoff"):
        Judge(llm, cutoff=1.5)


def emulate(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["fail"]:
        return {"error": f"upstream timeout for {payload['call']['arguments']}"}
    return {"output": {"city_id": "c-" + str(len(payload["recent_calls"]))}}


async def test_emulator_sees_context_and_fails_a_deterministic_share() -> None:
    llm = ScriptedChat({"emulate": emulate})
    emulator = ToolEmulator(llm, WEATHER, failure_rate=0.2, seed=11)
    calls = [await emulator.call("find_city", {"name": f"city {i}"}) for i in range(300)]
    failed = [c for c in calls if c.error is not None]
    assert all(c.injected for c in failed)
    assert 0.15 < len(failed) / len(calls) < 0.25  # 20% by default; seeded, so fixed
    expected = [should_fail(11, i, "find_city", {"name": f"city {i}"}, 0.2) for i in range(300)]
    assert [c.error is not None for c in calls] == expected
    again = ToolEmulator(ScriptedChat({"emulate": emulate}), WEATHER, seed=11)
    repeat = [await again.call("find_city", {"name": f"city {i}"}) for i in range(20)]
    assert [c.error for c in repeat] == [c.error for c in calls[:20]]

    stage, payload = llm.requests[7]
    assert stage == "emulate"
    assert payload["tool"]["name"] == "find_city"
    assert payload["tool"]["output_schema"] == WEATHER.tool("find_city").output_schema
    assert payload["server"] == "weather"
    assert [c["arguments"]["name"] for c in payload["recent_calls"]] == [
        f"city {i}" for i in range(2, 7)
    ]  # the last five calls
    assert payload["call"] == {"tool": "find_city", "arguments": {"name": "city 7"}}


async def test_emulator_schema_errors_unknown_tools_and_malformed_replies() -> None:
    llm = ScriptedChat({"emulate": lambda p: {"output": None}})
    emulator = ToolEmulator(llm, WEATHER, failure_rate=0.0)
    bad = await emulator.call("get_forecast", {"city_id": 5})
    assert bad.error is not None
    assert "invalid arguments for get_forecast" in bad.error
    unknown = await emulator.call("teleport", {})
    assert unknown.error is not None
    assert "unknown tool 'teleport'" in unknown.error
    assert llm.requests == []  # neither reached the LLM
    with pytest.raises(Unparseable, match="output"):
        await emulator.call("find_city", {"name": "Oslo"})
    with pytest.raises(ValueError, match="failure_rate"):
        ToolEmulator(llm, WEATHER, failure_rate=1.5)
    never = ToolEmulator(ScriptedChat({"emulate": emulate}), WEATHER, failure_rate=0.0)
    outcomes = [await never.call("find_city", {"name": str(i)}) for i in range(30)]
    assert all(c.error is None for c in outcomes)
