"""What activation checkpointing costs and saves in a GRPO step: seconds and peak memory.

One GRPO step (``grpo_step``: forward, clipped loss, backward, AdamW) of the default policy
(SmolLM2-135M-Instruct from the model store, float32 master weights as the trainer holds them)
on ``--groups`` groups of 4 sequences of ``--tokens`` tokens each, once with activation
checkpointing (the trainer's default, ``gradient_checkpointing=True``) and once without,
micro-batches of ``--micro-batch-size`` sequences. Each setting runs in a fresh process, so
its peak resident memory (``ru_maxrss``) is its own; the first step warms up and is not timed.
The longest micro-batch of a multi-turn GRPO batch is 4 sequences at the 2,048-token cut, so
the defaults measure the step's worst case.

    .venv/bin/python bench/checkpointing.py                       # 4 x 2,048 tokens
    .venv/bin/python bench/checkpointing.py --tokens 1024 --steps 2

Prints a table and the without/with ratios. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure(args: argparse.Namespace, checkpointing: bool) -> dict[str, Any]:
    """One setting, in this process: load, warm-up step, ``--steps`` timed steps, peak RSS."""
    import torch
    from transformers import AutoModelForCausalLM

    from astra_trainer.grpo.encoding import EncodedTrajectory
    from astra_trainer.grpo.step import grpo_step
    from astra_trainer.models import ModelStore

    torch.manual_seed(0)
    folder = ModelStore(args.model_dir).ensure_default()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if checkpointing:  # as the trainer's runner sets it up
        model.config.use_cache = False
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    vocab = int(model.config.vocab_size)
    # A multi-turn shape: a prompt, then the policy's turns (trained) after the first quarter.
    policy_from = args.tokens // 4
    groups = [
        [
            EncodedTrajectory(
                record_id=f"g{g}-{i}",
                group_id=f"g{g}",
                reward=float(i % 2),
                policy_version=0,
                input_ids=torch.randint(0, vocab, (args.tokens,)).tolist(),
                loss_mask=[0] * policy_from + [1] * (args.tokens - policy_from),
                behaviour_logprobs=None,
                turns=1,
                calls=0,
            )
            for i in range(4)
        ]
        for g in range(args.groups)
    ]
    seconds = []
    for step in range(args.steps + 1):
        started = time.perf_counter()
        grpo_step(
            model,
            optimizer,
            groups,
            clip_low=0.2,
            clip_high=0.2,
            max_grad_norm=1.0,
            micro_batch_size=args.micro_batch_size,
            pad_token_id=0,
        )
        if step:  # the first step warms up (allocator, kernels)
            seconds.append(time.perf_counter() - started)
    tokens = args.groups * 4 * args.tokens
    step_s = sum(seconds) / len(seconds)
    return {
        "activation_checkpointing": checkpointing,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2048, help="Tokens per sequence.")
    parser.add_argument("--groups", type=int, default=1, help="Groups of 4 sequences.")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1, help="Timed steps after the warm-up.")
    parser.add_argument("--model-dir", type=Path, default=Path(".astra/models"))
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("tokens", "groups", "micro_batch_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.child:
        print(json.dumps(measure(args, args.child == "on")))
        return

    rows = []
    for setting in ("on", "off"):
        command = [sys.executable, __file__, *sys.argv[1:], "--child", setting]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"the {setting} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    on, off = rows
    print(
        f"GRPO step, {args.groups} x 4 sequences of {args.tokens} tokens, micro-batches of "
        f"{args.micro_batch_size}, {platform.machine()}, {on['torch_threads']} torch threads"
    )
    print(f"{'checkpointing':<14} {'s/step':>8} {'tokens/s':>9} {'peak RSS GiB':>13}")
    for row in rows:
        label = "on" if row["activation_checkpointing"] else "off"
        print(
            f"{label:<14} {row['step_s']:>8.1f} {row['tokens_per_s']:>9.0f} "
            f"{row['peak_rss_gib']:>13.2f}"
        )
    print(
        f"off/on: time {off['step_s'] / on['step_s']:.2f}x, "
        f"peak memory {off['peak_rss_gib'] / on['peak_rss_gib']:.2f}x"
    )


if __name__ == "__main__":
    main()
