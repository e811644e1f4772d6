"""ASTRA wire contracts: the pydantic models every service shares.

Producers and consumers import the same models; JSON Schemas generated from them live in
``proto/schemas/``.
"""

from astra_proto.base import SCHEMA_VERSION, ContractModel, canonical_json, sha256_hex
from astra_proto.chat import FunctionCall, Message, ToolCall
from astra_proto.environment import (
    BuiltinBackend,
    EnvironmentSpec,
    Provenance,
    ReplayRecord,
    ScenarioType,
    SubQuestion,
    VerificationCertificate,
)
from astra_proto.episode import (
    DistractorRef,
    Episode,
    EpisodeRequest,
    EpisodeState,
    ScoreRequest,
    ToolCallRecord,
)
from astra_proto.execution import CallOutcome, ExecutionCall, ExecutionRequest, ExecutionResult
from astra_proto.jobs import (
    JobKind,
    JobRejection,
    JobRejectionPage,
    JobState,
    StageProgress,
    SynthesisJob,
)
from astra_proto.rewards import RewardBreakdown
from astra_proto.stream import POLICY_KEY, TRAJECTORY_STREAM, PolicyPointer, StreamEnvelope
from astra_proto.tools import ReferenceCall, SyntheticTool, ToolSpec
from astra_proto.trajectory import FinishReason, Timings, Trajectory

__all__ = [
    "POLICY_KEY",
    "SCHEMA_VERSION",
    "TRAJECTORY_STREAM",
    "BuiltinBackend",
    "CallOutcome",
    "ContractModel",
    "DistractorRef",
    "EnvironmentSpec",
    "Episode",
    "EpisodeRequest",
    "EpisodeState",
    "ExecutionCall",
    "ExecutionRequest",
    "ExecutionResult",
    "FinishReason",
    "FunctionCall",
    "JobKind",
    "JobRejection",
    "JobRejectionPage",
    "JobState",
    "Message",
    "PolicyPointer",
    "Provenance",
    "ReferenceCall",
    "ReplayRecord",
    "RewardBreakdown",
    "ScenarioType",
    "ScoreRequest",
    "StageProgress",
    "StreamEnvelope",
    "SubQuestion",
    "SynthesisJob",
    "SyntheticTool",
    "Timings",
    "ToolCall",
    "ToolCallRecord",
    "ToolSpec",
    "Trajectory",
    "VerificationCertificate",
    "canonical_json",
    "sha256_hex",
]
