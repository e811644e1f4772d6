"""Command-line entry points for training runs (what ``astra train`` and the API start).

``python -m astra_trainer.cli sft --config run.json`` and ``... grpo --config run.json`` run
one SFT or GRPO run in this process from a JSON config (``SFTRunConfig`` / ``GRPOConfig``).
SIGTERM or SIGINT stop a GRPO run after the step in progress (its entries acked) and exit 0.

A GRPO config with ``num_processes`` N > 1 makes the command replace itself with
``python -m torch.distributed.run --standalone --nproc-per-node N -m astra_trainer.cli ...``
(what ``accelerate launch`` runs for multi-GPU DDP): N ranks, rank 0 the run (it writes its
pid in ``status.json``; stop it there), the others training its steps (see
``astra_trainer.grpo.parallel``). The same command started by a launcher (``WORLD_SIZE`` set)
takes its rank from the environment.
Exit codes: 0 done, 2 bad config or input, 1 training failed (its traceback is logged, and
``status.json`` in the run directory holds the reason).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from astra_proto.api.trainer import RunStatus
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.runner import GRPORunner, run_worker, stream_redis_client
from astra_trainer.models import ModelStore, ModelStoreError
from astra_trainer.sft import SFTResult, SFTRunConfig, run_sft
from astra_trainer.sft_data import DatasetFormatError

if TYPE_CHECKING:
    from astra_trainer.grpo.parallel import DataParallel

DEFAULT_MODEL_DIR = Path(".astra/models")


def sft(config: SFTRunConfig, model_dir: Path = DEFAULT_MODEL_DIR) -> SFTResult:
    """Run SFT to completion in this process."""
    return run_sft(config, ModelStore(model_dir))


def launch_command(config_path: Path, model_dir: Path, num_processes: int) -> list[str]:
    """The command that runs a GRPO config as ``num_processes`` ranks on this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={num_processes}",
        "-m", "astra_trainer.cli", "grpo", "--config", str(config_path),
        "--model-dir", str(model_dir),
    ]  # fmt: skip


def launched() -> bool:
    """Whether a distributed launcher started this process (one of several ranks)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


async def grpo(
    config: GRPOConfig, model_dir: Path = DEFAULT_MODEL_DIR, parallel: DataParallel | None = None
) -> RunStatus:
    """Run GRPO in this process (rank 0 of ``parallel``) until ``max_steps`` or SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = stream_redis_client(config)
    try:
        return await GRPORunner(config, redis, ModelStore(model_dir), parallel).run(stop)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    """``python -m astra_trainer.cli {sft,grpo} --config FILE [--model-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="astra_trainer.cli", description=__doc__)
    parser.add_argument("kind", choices=["sft", "grpo"])
    parser.add_argument("--config", type=Path, required=True, help="run config (JSON)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args(argv)
    rank = f"[rank {os.environ['RANK']}] " if launched() else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {rank}%(name)s: %(message)s"
    )
    try:
        raw = json.loads(args.config.read_text())
        raw.pop("kind", None)
        config = (SFTRunConfig if args.kind == "sft" else GRPOConfig).model_validate(raw)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        print(f"astra-trainer: {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        if isinstance(config, SFTRunConfig):
            print(sft(config, args.model_dir).model_dump_json())
        elif config.num_processes > 1 and not launched():
            command = launch_command(args.config, args.model_dir, config.num_processes)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, command)  # same pid: the caller's handle stays valid
        elif launched():
            # Imported here: accelerate adds seconds to every single-process start.
            from astra_trainer.grpo.parallel import DataParallel, ignore_stop_signals

            parallel = DataParallel(config.collective_timeout_s)
            if parallel.is_main:
                status = asyncio.run(grpo(config, args.model_dir, parallel))
                print(status.model_dump_json())
            else:
                ignore_stop_signals()
                run_worker(config, ModelStore(args.model_dir), parallel)
        else:
            print(asyncio.run(grpo(config, args.model_dir)).model_dump_json())
    except (DatasetFormatError, ModelStoreError) as exc:
        print(f"astra-trainer: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # The run logged its traceback and wrote the reason into status.json.
        print(
            f"astra-trainer: {args.kind} run failed: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
