"""One GRPO step on a fixed batch as one rank of ``torch.distributed.run`` (test support).

``python -m torch.distributed.run --standalone --nproc-per-node N ddp_step_rank.py MODEL
BATCH OUT``: every rank loads ``MODEL`` the way a run does, takes one ``grpo_step`` on the
groups in ``BATCH`` (JSON, ``EncodedTrajectory`` fields) with plain SGD at learning rate 1
and no clipping, so the weight change is the batch gradient itself, and writes
``OUT/rank<r>.json`` (loss, grad norm, a checksum of its weights); rank 0 also saves its
weights to ``OUT/weights.pt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from astra_trainer.grpo.checkpoint import CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.parallel import DataParallel, decode_groups
from astra_trainer.grpo.runner import load_policy
from astra_trainer.grpo.step import grpo_step
from astra_trainer.models import ModelStore

MICRO_BATCH_SIZE = 4
NO_CLIPPING = 1e9


def config_for(model: Path, out: Path) -> GRPOConfig:
    """The run config both the single process and the ranks load the model with."""
    # Without activation checkpointing: the same gradients, a third less time on two cores.
    return GRPOConfig(
        run_dir=out,
        base_model=str(model),
        micro_batch_size=MICRO_BATCH_SIZE,
        gradient_checkpointing=False,
    )


def weights_checksum(model: torch.nn.Module) -> float:
    """Sum of all weights in float64: equal on two ranks only if every update was."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def main(argv: list[str]) -> int:
    model_folder, batch_file, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    config = config_for(model_folder, out)
    parallel = DataParallel(config.collective_timeout_s)
    store = CheckpointStore(out / "checkpoints")
    _, _, model, _, _ = load_policy(config, ModelStore(out / "models"), store, parallel)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    groups = decode_groups(json.loads(batch_file.read_text()))
    stats = grpo_step(
        model, optimizer, groups, clip_low=config.clip_low, clip_high=config.clip_high,
        max_grad_norm=NO_CLIPPING, micro_batch_size=MICRO_BATCH_SIZE, pad_token_id=0,
        parallel=parallel,
    )  # fmt: skip
    share = parallel.share(sum(len(g) for g in groups))
    result = {
        "loss": stats.loss,
        "grad_norm": stats.grad_norm,
        "policy_tokens": stats.policy_tokens,
        "clip_fraction": stats.clip_fraction,
        "checksum": weights_checksum(model),
        "share": share,
        "backend": str(torch.distributed.get_backend()),
        "world_size": parallel.world_size,
        "seconds": stats.seconds,
    }
    (out / f"rank{parallel.rank}.json").write_text(json.dumps(result))
    if parallel.is_main:
        torch.save(model.state_dict(), out / "weights.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
