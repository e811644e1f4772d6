"""One valid example of each published contract of ``astra_proto.api.rollout``, keyed by its
name in ``CONTRACTS`` (tests/proto/test_contracts.py validates them against the published
schemas)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from synth_support import finished_trajectory

from astra_proto import JobState, ToolSpec
from astra_proto.api.rollout import (
    BatchRequest,
    BatchStatus,
    BatchSummary,
    CategoryScore,
    DistractorOptions,
    EmulatorOptions,
    EntryScore,
    EpisodeFailure,
    EpisodeLimits,
    EvaluationRequest,
    EvaluationStatus,
    PolicyEndpoint,
    RegistryQuery,
    SamplingParams,
    TaskFailure,
    TeacherRunRequest,
    TeacherRunStatus,
    TeacherServer,
    TeacherTask,
    TrajectoryPage,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENV_ID = "env_" + "0" * 32
POLICY = PolicyEndpoint(base_url="http://127.0.0.1:8000/v1", model="policy")
CATEGORY = CategoryScore(
    category="heldout_entities",
    entries=2,
    failed=0,
    mean_reward=0.5,
    success_rate=0.5,
    mean_turns=3.0,
    mean_tool_calls=2.5,
)

EXAMPLES: dict[str, BaseModel] = {
    "BatchRequest": BatchRequest(
        query=RegistryQuery(source="procedural", split="train", min_hops=1, limit=4),
        group_size=4,
        policy=POLICY,
        sampling=SamplingParams(temperature=1.0, max_tokens=256, seed=3),
        limits=EpisodeLimits(max_turns=8),
        distractors=DistractorOptions(enabled=True, per_band=1),
    ),
    "BatchStatus": BatchStatus(
        id="batch-1",
        state=JobState.RUNNING,
        environments=2,
        group_size=4,
        total=8,
        done=3,
        failed=1,
        published=2,
        summary=BatchSummary(scored=2, mean_reward=0.25, finish_reasons={"stop": 2}),
        recent_failures=[EpisodeFailure(trajectory_id="t-1", env_id=ENV_ID, reason="timeout")],
        created_at=T0,
    ),
    "EvaluationRequest": EvaluationRequest(
        suite="heldout-procedural", categories=["heldout_entities"], limit=16, label="sft"
    ),
    "EvaluationStatus": EvaluationStatus(
        id="eval-1",
        state=JobState.SUCCEEDED,
        created_at=T0,
        finished_at=T0,
        suite="heldout-procedural",
        model="policy",
        total=2,
        done=2,
        categories=[CATEGORY],
        overall=CATEGORY,
        entries=[
            EntryScore(
                env_id=ENV_ID,
                category="heldout_entities",
                reward=1.0,
                success=True,
                turns=3,
                tool_calls=2,
                finish_reason="stop",
                trajectory_id="t-2",
            )
        ],
    ),
    "TeacherRunRequest": TeacherRunRequest(
        tasks=[TeacherTask(id="task-1", question="Weather in Paris?", server="weather")],
        servers=[
            TeacherServer(
                name="weather",
                tools=[
                    ToolSpec(
                        name="get_weather",
                        description="Weather of a city.",
                        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
                    )
                ],
            )
        ],
        emulator=EmulatorOptions(url="http://127.0.0.1:8100", failure_rate=0.1),
    ),
    "TeacherRunStatus": TeacherRunStatus(
        id="teacher-1",
        state=JobState.RUNNING,
        created_at=T0,
        model="teacher",
        total=2,
        done=1,
        failed=1,
        tool_calls=3,
        emulated_calls=3,
        recent_failures=[TaskFailure(task_id="task-2", trajectory_id="t-3", reason="timeout")],
    ),
    "TrajectoryPage": TrajectoryPage(items=[finished_trajectory(1)], total=1, next_offset=None),
}
