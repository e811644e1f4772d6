"""One valid example of each published contract of ``astra_proto.api.trainer``, keyed by its
name in ``CONTRACTS`` (tests/proto/test_contracts.py validates them against the published
schemas)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from astra_proto.api.trainer import GRPORunRequest, RunStatus, SFTRunRequest

EXAMPLES: dict[str, BaseModel] = {
    "RunStatus": RunStatus(
        run_id="grpo-0123456789ab",
        kind="grpo",
        state="running",
        step=3,
        policy_version=3,
        checkpoint="/runs/grpo-0123456789ab/checkpoints/step-3",
        pid=4242,
        updated_at=datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
    ),
    "SFTRunRequest": SFTRunRequest(dataset=Path("/data/gold"), max_steps=100, seed=7),
    "GRPORunRequest": GRPORunRequest(
        base_model="/runs/sft-0123456789ab/final",
        group_size=8,
        batch_groups=4,
        buffer_groups=3,
        max_steps=10,
        group_start="new",
        num_processes=2,
    ),
}
