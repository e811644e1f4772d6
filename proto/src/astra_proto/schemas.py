"""Generate (``write``) or verify (``check``) the JSON Schemas in ``proto/schemas/``.

python -m astra_proto.schemas write proto/schemas
python -m astra_proto.schemas check proto/schemas
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from astra_proto.api import SERVICES
from astra_proto.chat import Message, ToolCall
from astra_proto.environment import EnvironmentSpec, SubQuestion, VerificationCertificate
from astra_proto.episode import Episode, EpisodeRequest, ScoreRequest, ToolCallRecord
from astra_proto.execution import CallOutcome, ExecutionCall, ExecutionRequest, ExecutionResult
from astra_proto.jobs import JobRejectionPage, SynthesisJob
from astra_proto.rewards import RewardBreakdown
from astra_proto.stream import PolicyPointer, StreamEnvelope
from astra_proto.tools import SyntheticTool, ToolSpec
from astra_proto.trajectory import Trajectory

CONTRACTS: dict[str, type[BaseModel]] = {
    "ToolSpec": ToolSpec,
    "SyntheticTool": SyntheticTool,
    "SubQuestion": SubQuestion,
    "EnvironmentSpec": EnvironmentSpec,
    "VerificationCertificate": VerificationCertificate,
    "Episode": Episode,
    "ToolCallRecord": ToolCallRecord,
    "EpisodeRequest": EpisodeRequest,
    "ScoreRequest": ScoreRequest,
    "Message": Message,
    "ToolCall": ToolCall,
    "Trajectory": Trajectory,
    "RewardBreakdown": RewardBreakdown,
    "SynthesisJob": SynthesisJob,
    "JobRejectionPage": JobRejectionPage,
    "TrajectoryEnvelope": StreamEnvelope[Trajectory],
    "PolicyPointer": PolicyPointer,
    "ExecutionCall": ExecutionCall,
    "ExecutionRequest": ExecutionRequest,
    "CallOutcome": CallOutcome,
    "ExecutionResult": ExecutionResult,
}
"""Every contract whose schema is published, by file name."""

for _service in SERVICES:
    _module = importlib.import_module(f"astra_proto.api.{_service}")
    CONTRACTS.update({f"{_service}.{name}": model for name, model in _module.CONTRACTS.items()})


def render_all() -> dict[str, str]:
    """File name → schema text, exactly as written to disk."""
    rendered = {}
    for name, model in CONTRACTS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://astra.dev/schemas/{name}.json"
        rendered[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def stale_files(directory: Path) -> list[str]:
    """Schema files that are missing, different from the models, or no longer generated."""
    expected = render_all()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    stale += sorted(p.name for p in directory.glob("*.json") if p.name not in expected)
    return stale


def main(argv: list[str] | None = None) -> int:
    """CLI: ``write DIR`` regenerates the schemas, ``check DIR`` exits 1 when they are stale."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("write", "check"):
        print("usage: python -m astra_proto.schemas {write|check} DIR", file=sys.stderr)
        return 2
    command, directory = args[0], Path(args[1])
    if command == "write":
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("*.json"):
            path.unlink()
        for name, text in render_all().items():
            (directory / name).write_text(text)
        print(f"wrote {len(CONTRACTS)} schemas to {directory}")
        return 0
    stale = stale_files(directory)
    if stale:
        print(f"stale schemas in {directory}: {', '.join(stale)}; run `make schemas`")
        return 1
    print(f"{len(CONTRACTS)} schemas up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
