"""One valid example of each published contract of ``astra_proto.api.synth``, keyed by its
name in ``CONTRACTS`` (the schema tests validate them against the published schemas)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from synth_support import finished_trajectory

from astra_proto import (
    EpisodeState,
    JobKind,
    JobState,
    ScenarioType,
    StageProgress,
    SynthesisJob,
    ToolSpec,
)
from astra_proto.api.synth import (
    BfclSelection,
    DatasetJobRequest,
    DatasetManifest,
    DatasetStats,
    DatasetUpload,
    Edge,
    EmulatedServer,
    EmulateReply,
    EmulateRequest,
    EnvironmentJobRequest,
    EnvironmentPage,
    EnvironmentQuery,
    EnvironmentSummary,
    EpisodePage,
    EpisodeSummary,
    JobPage,
    JobStats,
    JsonToolsSource,
    McpSource,
    OpenApiSource,
    PastCall,
    Registered,
    Rejection,
    TaskJobRequest,
    TeacherEndpoint,
    ToolGraph,
    ToolServer,
    Toolset,
    ToolsetRequest,
    TrainingMetrics,
    TrainingRuns,
    TrajectoryJobRequest,
    TrajectoryPage,
    TrajectorySettings,
    TrajectorySummary,
    VerificationReport,
    WorkerList,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENV_ID = "env_" + "0" * 32
FORECAST = ToolSpec(
    name="get_forecast",
    description="Weather forecast for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
STAGE = StageProgress(stage="generated", done=2, total=3, rejected={"ambiguous_answer": 1})
JOB = SynthesisJob(
    id="job_1",
    kind=JobKind.ENVIRONMENTS,
    state=JobState.RUNNING,
    params={"source": "procedural", "count": 3},
    progress=[STAGE],
    created_at=T0,
    updated_at=T0,
    attempts=1,
    heartbeat_at=T0,
)

EXAMPLES: dict[str, BaseModel] = {
    "EnvironmentJobRequest": EnvironmentJobRequest(
        source="bfcl", bfcl=BfclSelection(categories=["base"], limit=2), concurrency=2
    ),
    "DatasetJobRequest": DatasetJobRequest(name="gold-1", job_id="job_1", limit=10),
    "TaskJobRequest": TaskJobRequest(
        toolset_id="weather", settings=TrajectorySettings(walks_per_server=2), llm_model="m"
    ),
    "TrajectoryJobRequest": TrajectoryJobRequest(
        toolset_id="weather",
        teacher=TeacherEndpoint(base_url="http://teacher:8000/v1", model="teacher"),
        tasks="stored",
        name="teach-1",
    ),
    "JobPage": JobPage(items=[JOB]),
    "JobStats": JobStats(
        job_id="job_1", state=JobState.RUNNING, progress=[STAGE], stats={"registered": 2}
    ),
    "WorkerList": WorkerList(count=1, workers=["celery@synth-worker"]),
    "EnvironmentQuery": EnvironmentQuery(
        source="procedural", scenario_type=ScenarioType.MULTI_HOP, min_hops=2, max_hops=4
    ),
    "EnvironmentPage": EnvironmentPage(
        total=1,
        items=[
            EnvironmentSummary(
                id=ENV_ID,
                kind="synthetic",
                source="procedural",
                domain="travel",
                scenario_type=ScenarioType.MULTI_HOP,
                split="train",
                hops=2,
                tools=3,
                task="Which hotel is closest to the airport?",
            )
        ],
    ),
    "VerificationReport": VerificationReport(
        env_id=ENV_ID, holds=False, replays=2, problems=["call 1: output differs"]
    ),
    "Registered": Registered(id=ENV_ID, created=True),
    "DatasetUpload": DatasetUpload(name="uploaded", records=[finished_trajectory(1)]),
    "DatasetManifest": DatasetManifest(
        name="gold-1",
        path="/data/datasets/gold-1",
        files={"jsonl/train.jsonl": "0" * 64},
        stats=DatasetStats(records=1, tool_calls_mean=2.0, by_domain={"travel": 1}),
        rejected={"no_final_answer": 1},
        created_at=T0,
    ),
    "ToolsetRequest": ToolsetRequest(
        id="weather",
        mcp=[McpSource(url="http://envhost:8101/envs/x/mcp", name="env")],
        openapi=[OpenApiSource(document={"openapi": "3.0.0", "paths": {}})],
        json_tools=[JsonToolsSource(name="weather", tools=[FORECAST.model_dump(mode="json")])],
    ),
    "Toolset": Toolset(
        id="weather",
        servers=[ToolServer(name="weather", source="json", tools=[FORECAST])],
        rejected=[Rejection(subject="tool:weather/vague", reason="vague_description")],
        created_at=T0,
    ),
    "ToolGraph": ToolGraph(
        server="weather",
        nodes=["find_city", "get_forecast"],
        edges=[Edge(source="find_city", target="get_forecast", weight=2, from_llm=1)],
    ),
    "EmulateRequest": EmulateRequest(
        server=EmulatedServer(name="weather", tools=[FORECAST]),
        tool="get_forecast",
        arguments={"city": "Oslo"},
        history=[PastCall(tool="get_forecast", arguments={"city": "Rome"}, output={"c": 20})],
        index=1,
    ),
    "EmulateReply": EmulateReply(output={"temperature_c": 21}),
    "EpisodePage": EpisodePage(
        total=1,
        items=[
            EpisodeSummary(
                id="ep_1",
                env_id=ENV_ID,
                state=EpisodeState.SCORED,
                seed=0,
                turn=0,
                calls=2,
                f1=1.0,
                created_at=T0,
                last_active_at=T0,
            )
        ],
    ),
    "TrajectoryPage": TrajectoryPage(
        total=1,
        items=[
            TrajectorySummary(
                id="traj-1",
                env_id=ENV_ID,
                episode_id="ep_1",
                group_id=None,
                policy_version=0,
                f1=None,
                finish_reason="final_answer",
                created_at=T0,
            )
        ],
    ),
    "TrainingRuns": TrainingRuns(trainer_url="http://trainer:8103", runs=[{"run_id": "sft-1"}]),
    "TrainingMetrics": TrainingMetrics(
        trainer_url="http://trainer:8103", run_id="sft-1", steps=[{"step": 1, "loss": 0.5}]
    ),
}
