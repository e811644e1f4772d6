"""How much of a GRPO run's update survives serving the policy in bfloat16.

Compares a trained checkpoint (float32, as the GRPO trainer saves it) with the weights it
started from (the SFT model, saved in bfloat16): the share of parameters that changed, and
the share that still differ from the start once the trained weights are rounded to bfloat16,
which is what a bfloat16 vLLM server loads; and the update's norm before and after rounding.

    .venv/bin/python bench/rounding.py \\
        .astra-learning/checkpoints/sft-*/final \\
        .astra-learning/checkpoints/grpo-*/checkpoints/v000006

(the folders ``bench/learning.py`` leaves under its state dir). A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors import safe_open


def weights(folder: Path) -> Path:
    """The single safetensors file of a model folder."""
    found = sorted(folder.glob("*.safetensors"))
    if len(found) != 1:
        sys.exit(f"{folder}: expected one .safetensors file, found {len(found)}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="The model folder training started from.")
    parser.add_argument("after", type=Path, help="A trained checkpoint folder.")
    args = parser.parse_args()
    total = changed = kept = 0
    update = rounded_update = 0.0
    with (
        safe_open(weights(args.before), "pt") as before,
        safe_open(weights(args.after), "pt") as after,
    ):
        names = sorted(set(before.keys()) & set(after.keys()))
        if not names:
            sys.exit("the two folders share no tensor names")
        dtypes: set[str] = set()
        for name in names:
            start, trained = before.get_tensor(name), after.get_tensor(name)
            dtypes |= {str(start.dtype), str(trained.dtype)}
            start, trained = start.float(), trained.float()
            served = trained.to(torch.bfloat16).float()
            total += start.numel()
            changed += int((trained != start).sum())
            kept += int((served != start).sum())
            update += float(((trained - start) ** 2).sum())
            rounded_update += float(((served - start) ** 2).sum())
    print(f"{len(names)} tensors, {total:,} parameters ({', '.join(sorted(dtypes))})")
    print(f"changed by training:                  {changed / total:7.1%}")
    print(f"still changed after bfloat16 rounding: {kept / total:7.1%}")
    print(f"update norm: {update**0.5:.4f}; after bfloat16 rounding: {rounded_update**0.5:.4f}")


if __name__ == "__main__":
    main()
