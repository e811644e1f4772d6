"""Trajectory synthesis (SFT data): tool documents -> tool-call graph -> chains -> tasks ->
(trajectories) -> judged samples -> datasets; and the offline path, gold trajectories from
procedural environments' reference solutions. See docs/trajectory-synthesis.md. The models
its API answers with (``Toolset``, ``ToolGraph``, ``DatasetManifest``) and its settings
(``TrajectorySettings``) are contracts of ``astra_proto.api.synth``.
"""

from astra_synth.trajectories.emulator import EmulatedCall, ToolEmulator
from astra_synth.trajectories.export import export_dataset
from astra_synth.trajectories.gold import GoldError, gold_dataset, gold_plan, gold_trajectory
from astra_synth.trajectories.judge import Judge, JudgedSample, JudgeReport
from astra_synth.trajectories.models import Chain, SynthTask, TaskSynthesis
from astra_synth.trajectories.store import TrajectoryStore
from astra_synth.trajectories.toolsets import (
    build_toolset,
    server_from_json,
    server_from_mcp,
    server_from_openapi,
)
from astra_synth.trajectories.user_tasks import synthesize_tasks

__all__ = [
    "Chain",
    "EmulatedCall",
    "GoldError",
    "Judge",
    "JudgeReport",
    "JudgedSample",
    "SynthTask",
    "TaskSynthesis",
    "ToolEmulator",
    "TrajectoryStore",
    "build_toolset",
    "export_dataset",
    "gold_dataset",
    "gold_plan",
    "gold_trajectory",
    "server_from_json",
    "server_from_mcp",
    "server_from_openapi",
    "synthesize_tasks",
]
