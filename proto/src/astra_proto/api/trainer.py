"""The trainer service's REST contracts: request and answer bodies of its routes.

``POST /v1/runs/sft`` takes ``SFTRunRequest`` and ``POST /v1/runs/grpo`` ``GRPORunRequest``;
both answer the new run's ``RunStatus``, as ``GET /v1/runs/{id}`` and ``POST .../stop`` do.
The trainer's run configs (``SFTRunConfig``, ``GRPOConfig``) are these knobs plus what the
service chooses itself (the run directory; for GRPO also Redis, the policy server and the
process count, unless the request names them). ``GET /v1/policy`` answers the
``PolicyPointer`` of ``astra_proto.stream``; ``GET /v1/runs/{id}/metrics`` the run's metrics
records as logged (flat JSON objects: ``time``, ``event``, ``step``, ``loss``, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from astra_proto.base import ContractModel
from astra_proto.stream import TRAJECTORY_STREAM

RunKind = Literal["sft", "grpo"]
RunState = Literal["pending", "running", "finished", "failed", "stopped"]


def _now() -> datetime:
    return datetime.now(UTC)


class RunStatus(ContractModel):
    """The state of one run, as its ``status.json`` holds it."""

    run_id: str
    kind: RunKind
    state: RunState
    step: int = 0
    """Optimizer steps done so far."""
    policy_version: int | None = None
    """Latest policy version written (GRPO)."""
    checkpoint: str | None = None
    """Latest checkpoint folder."""
    error: str | None = None
    pid: int | None = None
    updated_at: datetime = Field(default_factory=_now)


def _without_run_dir(data: Any) -> Any:
    if isinstance(data, dict) and "run_dir" in data:
        raise ValueError("run_dir is chosen by the service")
    return data


class SFTOptions(ContractModel):
    """The knobs of one SFT run. Defaults follow the paper's recipe scaled to a CPU-sized
    model."""

    dataset: Path = Field(description="Exported dataset: a .parquet/.jsonl file or a folder.")
    base_model: str = Field(
        default="SmolLM2-135M-Instruct",
        description="Model store name or a local Hugging Face model folder.",
    )
    max_steps: int = Field(default=-1, description="Optimizer steps; -1 trains num_epochs.")
    num_epochs: float = Field(default=2.0, gt=0, description="Epochs when max_steps is -1.")
    batch_size: int = Field(default=4, ge=1, description="Sequences per device per step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-6, gt=0)
    lr_scheduler_type: str = Field(default="cosine")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Warm-up share of steps.")
    max_length: int = Field(default=4096, ge=16, description="Longer samples are truncated.")
    save_steps: int = Field(default=500, ge=1, description="Checkpoint every this many steps.")
    save_total_limit: int | None = Field(default=2, description="Checkpoints kept (None: all).")
    logging_steps: int = Field(default=1, ge=1)
    seed: int = 0


class SFTRunRequest(SFTOptions):
    """Start an SFT run (``POST /v1/runs/sft``); the service chooses its run directory."""

    @model_validator(mode="before")
    @classmethod
    def _run_dir_is_the_services(cls, data: Any) -> Any:
        return _without_run_dir(data)


class GRPOOptions(ContractModel):
    """The knobs of one GRPO run reading ``stream`` through consumer group ``group``.

    Defaults follow the ASTRA recipe (no KL, no entropy bonus, token loss averaged over the
    batch, one optimizer step per batch) with sizes fit for a small model on a CPU.
    """

    base_model: str = Field(
        default="SmolLM2-135M-Instruct",
        description="Model store name or model folder (e.g. an SFT run's final/) of version 0.",
    )
    stream: str = Field(default=TRAJECTORY_STREAM)
    group: str = Field(default="trainer", description="Consumer group on the stream.")
    consumer_name: str = Field(default="trainer-0", description="This consumer in the group.")
    group_start: Literal["beginning", "new"] = Field(
        default="beginning",
        description="Where a group created by this run starts reading: the whole stream, or "
        "only entries added after it was created (an existing group keeps its position).",
    )

    group_size: int = Field(default=4, ge=2, description="Rollouts per task (one group id).")
    batch_groups: int = Field(default=2, ge=1, description="Valid groups per optimizer step.")
    buffer_groups: int = Field(
        default=1, ge=0, description="Valid groups kept beyond a batch; must be below the batch."
    )
    reward_std_delta: float = Field(
        default=1e-6, ge=0, description="A group counts only if Std(R) exceeds this."
    )
    max_staleness: int = Field(
        default=1,
        ge=0,
        description="Groups sampled by a policy more than this many versions old are dropped.",
    )
    group_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="An incomplete group older than this closes with what it has (>= 2).",
    )
    max_tokens: int = Field(
        default=4096, ge=16, description="Longest sequence trained on (see ``overlong``)."
    )
    overlong: Literal["truncate", "drop"] = Field(
        default="truncate",
        description="A trajectory longer than max_tokens: trained on its first max_tokens "
        "tokens (its group stays whole, so the advantages of the others do not change), or "
        "dropped (its group loses a member; long failures then never count against the policy).",
    )

    learning_rate: float = Field(default=2e-6, gt=0)
    clip_low: float = Field(default=0.2, ge=0, description="Ratio clipped below 1 - clip_low.")
    clip_high: float = Field(default=0.2, ge=0, description="Ratio clipped above 1 + clip_high.")
    max_grad_norm: float = Field(default=1.0, gt=0)
    micro_batch_size: int = Field(default=4, ge=1, description="Sequences per forward pass.")
    gradient_checkpointing: bool = Field(
        default=True,
        description="Recompute activations in the backward pass: multi-turn sequences with "
        "tool schemas are long, and stored activations take gigabytes (SmolLM2-135M, 4 x 2,048 "
        "tokens on a CPU: peak 9.9 GiB with, 19.3 GiB without, same step time; "
        "bench/checkpointing.py).",
    )
    weight_decay: float = Field(default=0.0, ge=0)

    read_count: int = Field(default=64, ge=1, description="Entries per stream read.")
    block_ms: int = Field(default=1000, ge=1, description="How long one read waits.")
    redis_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a Redis reply may take (beyond a read's block_ms) before the "
        "call counts as failed and is retried: generous, since a loaded machine can stall "
        "for seconds.",
    )
    redis_give_up_s: float = Field(
        default=120.0,
        gt=0,
        description="How long Redis may keep failing (timeouts, refused or lost connections) "
        "before the run fails; until then every failed call is logged and retried with backoff.",
    )
    keep_checkpoints: int = Field(
        default=2, ge=1, description="Checkpoints whose weights are kept (states always are)."
    )
    save_optimizer: bool = Field(default=True, description="Save AdamW state for exact resume.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps.")

    served_model: str | None = Field(
        default=None, description="Model name at the policy server (goes into the pointer)."
    )
    push_timeout_s: float = Field(default=120.0, gt=0)
    seed: int = 0

    lora_rank: int = Field(
        default=0,
        ge=0,
        description="LoRA adapters of this rank on every linear layer (peft); only they train, "
        "and checkpoints hold the merged weights (what vLLM loads) with the adapter in "
        "adapter/. 0 trains all weights. For models whose full AdamW state does not fit.",
    )
    lora_alpha: int = Field(
        default=32, gt=0, description="LoRA scale numerator: updates are scaled by alpha/rank."
    )
    collective_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="How long a rank waits in a collective (the next batch, a gradient "
        "all-reduce) before the run fails; rank 0 signals idle ranks every "
        "heartbeat_s, so only a hung rank reaches it.",
    )
    heartbeat_s: float = Field(
        default=60.0, gt=0, description="How often rank 0 tells waiting ranks it is alive."
    )

    @model_validator(mode="after")
    def _buffer_below_batch(self) -> Self:
        if self.buffer_groups >= self.batch_groups:
            raise ValueError("buffer_groups must be smaller than batch_groups")
        if self.heartbeat_s >= self.collective_timeout_s:
            raise ValueError("heartbeat_s must be smaller than collective_timeout_s")
        return self


NUM_PROCESSES_HELP = (
    "Data-parallel training processes (DDP through accelerate: gloo on CPU, nccl with one GPU "
    "per process). 1 trains in the run's own process; more makes the run launch itself under "
    "torch.distributed.run. Rank 0 alone reads the stream, checkpoints, acks and publishes; "
    "every step's sequences are split across the ranks."
)
POLICY_SERVER_HELP = "vLLM server to reload weights into after each step; '' = none."


class GRPORunRequest(GRPOOptions):
    """Start a GRPO consumer (``POST /v1/runs/grpo``); the service chooses its run directory,
    and its settings fill in Redis, the policy server and the process count left out."""

    redis_url: str | None = Field(default=None, description="None: the trainer's Redis.")
    policy_server_url: str | None = Field(
        default=None, description=f"{POLICY_SERVER_HELP} None: the trainer's policy server."
    )
    num_processes: int | None = Field(
        default=None, ge=1, description=f"{NUM_PROCESSES_HELP} None: the trainer's setting."
    )

    @model_validator(mode="before")
    @classmethod
    def _run_dir_is_the_services(cls, data: Any) -> Any:
        return _without_run_dir(data)


CONTRACTS: dict[str, type[BaseModel]] = {
    "RunStatus": RunStatus,
    "SFTRunRequest": SFTRunRequest,
    "GRPORunRequest": GRPORunRequest,
}
"""Every contract of this module whose JSON Schema is published, by model name."""
