"""Every knob of a GRPO run, with the reason for its default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from astra_proto.api.trainer import NUM_PROCESSES_HELP, POLICY_SERVER_HELP, GRPOOptions


class GRPOConfig(GRPOOptions):
    """One GRPO run: the knobs a request may set (``GRPOOptions``, whose defaults follow the
    ASTRA recipe) and where the run lives and what it talks to."""

    run_dir: Path = Field(description="Checkpoints, metrics and status of this run.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0")
    policy_server_url: str = Field(default="", description=POLICY_SERVER_HELP)
    num_processes: int = Field(default=1, ge=1, description=NUM_PROCESSES_HELP)
