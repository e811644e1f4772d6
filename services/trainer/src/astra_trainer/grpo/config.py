"""Every knob of a GRPO run, with the reason for its default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import TRAJECTORY_STREAM


class GRPOConfig(BaseModel):
    """One GRPO run reading ``stream`` through consumer group ``group``.

    Defaults follow the ASTRA recipe (no KL, no entropy bonus, token loss averaged over the
    batch, one optimizer step per batch) with sizes fit for a small model on a CPU.
    """

    model_config = ConfigDict(extra="forbid")

    run_dir: Path = Field(description="Checkpoints, metrics and status of this run.")
    base_model: str = Field(
        default="SmolLM2-135M-Instruct",
        description="Model store name or model folder (e.g. an SFT run's final/) of version 0.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0")
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
    max_tokens: int = Field(default=4096, ge=16, description="Longer trajectories are dropped.")

    learning_rate: float = Field(default=2e-6, gt=0)
    clip_low: float = Field(default=0.2, ge=0, description="Ratio clipped below 1 - clip_low.")
    clip_high: float = Field(default=0.2, ge=0, description="Ratio clipped above 1 + clip_high.")
    max_grad_norm: float = Field(default=1.0, gt=0)
    micro_batch_size: int = Field(default=4, ge=1, description="Sequences per forward pass.")
    gradient_checkpointing: bool = Field(
        default=True,
        description="Recompute activations in the backward pass: multi-turn sequences with "
        "tool schemas are long, and stored activations would take gigabytes (costs ~30% time).",
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
    policy_server_url: str = Field(
        default="", description="vLLM server to reload weights into after each step; '' = none."
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
    num_processes: int = Field(
        default=1,
        ge=1,
        description="Data-parallel training processes (DDP through accelerate: gloo on CPU, "
        "nccl with one GPU per process). 1 trains in the run's own process; more makes the run "
        "launch itself under torch.distributed.run. Rank 0 alone reads the stream, checkpoints, "
        "acks and publishes; every step's sequences are split across the ranks.",
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
