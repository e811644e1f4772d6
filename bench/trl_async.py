"""GRPO step on a CPU: TRL's experimental ``AsyncGRPOTrainer`` against our ``grpo_step``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/trl_async.py            # 6 steps, ~25 s
    OMP_NUM_THREADS=1 .venv/bin/python bench/trl_async.py --steps 3 --threads 2 --seed 1

Both engines train a tiny Llama (hidden 64, 2 layers, 4 heads / 2 KV heads, SmolLM2's
49,152-token vocabulary, float32, random weights saved to a temporary folder) on the same
batch: 2 groups x 4 completions of at most 24 tokens, sampled from that model at temperature 1
with the chat template of SmolLM2's tokenizer. The batch is made discriminating: member i of
a group is cut 3·i tokens shorter, and the behaviour logprobs are moved by N(0, 0.3) so that
importance ratios differ from 1 and some tokens are clipped. Advantages are ours
(``loss.group_advantages``) on both sides; ε = 0.2 / 0.28, no KL, no gradient clipping in
effect (``max_grad_norm=1e9``), AdamW at lr 1e-4. Every step trains on the same batch.

- **trl**: ``AsyncGRPOTrainer.train()`` with an in-process queue as its rollout worker, filled
  beforehand with ``RolloutSample``s (one batch more than ``--steps``: accelerate's dispatcher
  collates the next batch before a step runs), a weight transfer that does nothing,
  ``token_budget=0`` (a fixed count of 8 sequences a step, one micro-batch).
- **ours**: ``astra_trainer.grpo.step.grpo_step`` on the same ``EncodedTrajectory`` groups,
  from the same weights.

Printed: step 1's loss, mean importance ratio and gradient norm of each (same weights, same
batch: they agree to float32 rounding, the loss to ~1e-6 relative), the largest absolute
difference between their step-1 gradients, and per side seconds per step (forward, backward
and optimizer: TRL's ``perf/fwd_bwd_s + perf/optimizer_s``, our ``StepStats.seconds``) and
tokens per second (the batch's unpadded tokens, prompts included; TRL forwards fewer, since
its packing forwards a group's shared prompt once) over ``--steps`` steps.

TRL's trainer does not run on a CPU-only torch as shipped; this script applies two patches
in-process (trl 1.16.0; paths under ``trl/``):

1. ``experimental/async_grpo/async_grpo_trainer.py:1240`` calls ``get_peak_flops_per_device``,
   which calls ``torch.cuda.get_device_name`` (``trainer/utils.py:1824``) even with
   ``use_cpu=True`` and fails ("Torch not compiled with CUDA enabled"). It is replaced by a
   function returning None (MFU metrics off) while the trainer is constructed.
2. The model is always loaded with ``attn_implementation="tree_fa3"``
   (``async_grpo_trainer.py:1083-1088``), whose function (``experimental/async_grpo/
   packing.py:168-201``) fetches the CUDA flash-attention-3 kernel from the Hugging Face Hub
   (``packing.py:159-165``, ``kernels.get_kernel``). A CPU stand-in (SDPA per packed segment,
   with flash-attention's bottom-right causal mask) is registered under that name after the
   trainer's ``__init__``, which registers the original itself (``async_grpo_trainer.py:1073``).

TRL's speed figures therefore measure this Python stand-in (and the CPU path of TRL's fused LM
head, which scores every forwarded position), not TRL's GPU path (FA3 and the Triton head).
The patched internals are version-specific: with a trl other than 1.16.x the script exits 2.

Nothing is downloaded: SmolLM2-135M-Instruct's tokenizer is read from a model store where it
is already converted (``--model-dir``; by default the trainer's ``.astra/models``, then
``bench/learning.py``'s ``.astra-learning/models``, then the trainer tests' cache). Findings
behind this comparison: ``AsyncGRPOTrainer`` hands advantages and old logprobs through from
the samples, and its loss divides by the micro-batch's policy tokens, so with one micro-batch a
step it computes what ``grpo_step`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import statistics
import sys
import tempfile
import time
import unittest.mock
from collections.abc import Iterator, Sequence
from multiprocessing.queues import Queue as MPQueue
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AttentionInterface,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PrinterCallback,
    TrainerCallback,
)

from astra_trainer.grpo.encoding import EncodedTrajectory, encode_trajectory
from astra_trainer.grpo.loss import group_advantages
from astra_trainer.grpo.step import grpo_step
from astra_trainer.models import DEFAULT_MODEL, ModelStore, verify_converted

# The trainer tests' sampler: groups with behaviour logprobs and rewards that vary.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "trainer"))
from trainer_support import sampled_groups

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_STORES = (
    Path(".astra/models"),  # the trainer's `model_dir` setting, bench/train.py's --model-dir
    Path(".astra-learning/models"),  # bench/learning.py's --state-dir
    Path(".pytest_cache/d/astra-trainer-models"),  # tests/trainer/trainer_support.py
)
TRL_VERSION = "1.16."
GROUPS, GROUP_SIZE, NEW_TOKENS = 2, 4, 24
CLIP_LOW, CLIP_HIGH, LEARNING_RATE, NO_CLIPPING = 0.2, 0.28, 1e-4, 1e9

Gradients = dict[str, torch.Tensor]


def find_smollm2(model_dir: Path | None) -> tuple[Path | None, list[str]]:
    """The converted SmolLM2 folder of the first store that holds an intact one (no download),
    else None and why each store does not."""
    roots = [model_dir] if model_dir is not None else [REPO_ROOT / p for p in MODEL_STORES]
    problems = []
    for root in roots:
        folder = ModelStore(root).default_dir
        problem = verify_converted(folder)
        if problem is None:
            return folder, []
        problems.append(problem)
    return None, problems


def tiny_llama(smollm2: Path, folder: Path, seed: int) -> None:
    """A 2-layer Llama with SmolLM2's vocabulary and tokenizer, saved to ``folder``."""
    base = LlamaConfig.from_pretrained(smollm2)
    config = LlamaConfig(
        vocab_size=base.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=base.bos_token_id,
        eos_token_id=base.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(folder)


def sample_groups(folder: Path, tokenizer: Any, seed: int) -> list[list[EncodedTrajectory]]:
    """``GROUPS`` x ``GROUP_SIZE`` completions sampled from the model in ``folder`` with their
    behaviour logprobs (the trainer tests' sampler), encoded as the trainer encodes them."""
    trajectories = sampled_groups(
        folder, groups=GROUPS, group_size=GROUP_SIZE, max_new_tokens=NEW_TOKENS, seed=seed
    )
    encoded = [encode_trajectory(t, tokenizer, max_tokens=4096) for t in trajectories]
    return [
        [e for e in encoded if e.group_id == g] for g in dict.fromkeys(e.group_id for e in encoded)
    ]


def uneven(groups: list[list[EncodedTrajectory]], seed: int) -> list[list[EncodedTrajectory]]:
    """Member i cut 3·i tokens shorter (keeping a policy token), behaviour logprobs of policy
    tokens moved by N(0, 0.3): uneven lengths, ratios away from 1, some clipped."""
    noise = np.random.default_rng(seed + 1)
    out = []
    for group in groups:
        changed = []
        for i, t in enumerate(group):
            n = len(t.input_ids) - min(3 * i, t.policy_tokens - 1)
            assert t.behaviour_logprobs is not None
            moved = [
                b + float(noise.normal(0, 0.3)) if m else b
                for b, m in zip(t.behaviour_logprobs[:n], t.loss_mask[:n], strict=True)
            ]
            changed.append(
                dataclasses.replace(
                    t,
                    input_ids=t.input_ids[:n],
                    loss_mask=t.loss_mask[:n],
                    behaviour_logprobs=moved,
                )
            )
        out.append(changed)
    return out


def cpu_tree_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    tree_kv_index: torch.Tensor,
    tree_cu_seqlens_q: torch.Tensor,
    tree_cu_seqlens_k: torch.Tensor,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """What ``flash_attn_varlen_func(causal=True)`` computes for TRL's packed rows, with SDPA
    one segment at a time (query ``[1, heads, tokens, dim]``; output ``[1, tokens, heads, dim]``).
    Sliding windows and soft-capping (not used by Llama) are not supported."""
    q = query[0]
    k = key[0].index_select(1, tree_kv_index)
    v = value[0].index_select(1, tree_kv_index)
    repeat = q.shape[0] // k.shape[0]  # grouped-query attention
    k, v = k.repeat_interleave(repeat, 0), v.repeat_interleave(repeat, 0)
    out = torch.empty_like(q)
    cq, ck = tree_cu_seqlens_q.tolist(), tree_cu_seqlens_k.tolist()
    for s in range(len(cq) - 1):
        lq, lk = cq[s + 1] - cq[s], ck[s + 1] - ck[s]
        # A segment's queries are the last lq of its lk keys: bottom-right aligned, as FA.
        mask = torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq)
        out[:, cq[s] : cq[s + 1]] = torch.nn.functional.scaled_dot_product_attention(
            q[:, cq[s] : cq[s + 1]],
            k[:, ck[s] : ck[s + 1]],
            v[:, ck[s] : ck[s + 1]],
            attn_mask=mask,
            scale=scaling,
        )
    return out.transpose(0, 1).unsqueeze(0), None


class QueueWorker:
    """A rollout worker whose samples are all queued before training starts."""

    def __init__(self, samples: Sequence[Any]) -> None:
        # Typed as TRL's protocol declares them (a thread or a process queue).
        self.rollout_buffer: queue.Queue[Any] | MPQueue[Any] = queue.Queue()
        self.metrics_queue: queue.Queue[Any] | MPQueue[Any] = queue.Queue()
        for sample in samples:
            self.rollout_buffer.put(sample)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def update_model_version(self, model_version: int) -> None:
        pass

    def check_health(self, stale_after_s: float) -> None:
        # Called when the trainer found the queue empty; it would otherwise wait forever.
        raise RuntimeError("the rollout queue ran dry: too few batches queued")


class NoWeightTransfer:
    """Weight sync that does nothing: there is no inference server."""

    def init_weight_transfer(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def send_weights(self, iterator: Iterator[tuple[str, torch.Tensor]]) -> None:
        for _ in iterator:
            pass

    def resume(self) -> None:
        pass

    def destroy(self) -> None:
        pass


class FirstGradients(TrainerCallback):
    """Keeps the gradients of the first optimizer step."""

    def __init__(self) -> None:
        self.grads: Gradients = {}

    def on_pre_optimizer_step(self, *args: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.grads:
            self.grads = gradients(model)


def gradients(model: torch.nn.Module) -> Gradients:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def rollout_samples(groups: list[list[EncodedTrajectory]], first_group_id: int) -> list[Any]:
    from trl.experimental.async_grpo.async_rollout_worker import RolloutSample

    samples = []
    for g, group in enumerate(groups):
        rewards = torch.tensor([t.reward for t in group], dtype=torch.float32)
        for t, advantage in zip(group, group_advantages(rewards).tolist(), strict=True):
            samples.append(
                RolloutSample(
                    prompt=[],
                    completion=[],
                    input_ids=np.asarray(t.input_ids, np.int64),
                    completion_mask=np.asarray(t.loss_mask, np.int64),
                    old_log_probs=np.asarray(t.behaviour_logprobs, np.float32),
                    advantage=float(advantage),
                    model_version=t.policy_version,
                    group_id=first_group_id + g,
                    metrics={"reward": t.reward},
                )
            )
    return samples


def run_trl(
    folder: Path, groups: list[list[EncodedTrajectory]], steps: int, seed: int
) -> tuple[list[dict[str, float]], Gradients]:
    """TRL's logged figures of each step, and its step-1 gradients."""
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.experimental.async_grpo import async_grpo_trainer
    from trl.experimental.async_grpo.async_grpo_config import AsyncGRPOConfig
    from trl.experimental.async_grpo.packing import TREE_ATTENTION

    # One batch more than steps: the dispatcher collates batch N+1 before step N.
    samples = [s for k in range(steps + 1) for s in rollout_samples(groups, k * len(groups))]
    with tempfile.TemporaryDirectory() as out:
        config = AsyncGRPOConfig(
            output_dir=out,
            use_cpu=True,
            bf16=False,
            activation_checkpointing=False,
            max_steps=steps,
            per_device_train_batch_size=len(samples) // (steps + 1),
            gradient_accumulation_steps=1,
            token_budget=0,
            learning_rate=LEARNING_RATE,
            max_grad_norm=NO_CLIPPING,
            max_staleness=steps + 1,
            epsilon=CLIP_LOW,
            epsilon_high=CLIP_HIGH,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            seed=seed,
        )
        # Patch 1: the peak-FLOPs probe needs CUDA (async_grpo_trainer.py:1240).
        with unittest.mock.patch.object(
            async_grpo_trainer, "get_peak_flops_per_device", return_value=None
        ):
            trainer = async_grpo_trainer.AsyncGRPOTrainer(
                model=str(folder),
                args=config,
                # Required even with a rollout worker; unused while max_steps > 0.
                train_dataset=Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]]}),
                rollout_worker=QueueWorker(samples),
                weight_transfer=NoWeightTransfer(),
            )
        # Patch 2, after __init__ registered TRL's own (async_grpo_trainer.py:1073).
        AttentionInterface.register(TREE_ATTENTION, cpu_tree_attention)
        trainer.remove_callback(PrinterCallback)  # prints every log dict (disable_tqdm adds it)
        first = FirstGradients()
        trainer.add_callback(first)
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return logs, first.grads


def run_ours(
    folder: Path, groups: list[list[EncodedTrajectory]], steps: int, pad_token_id: int
) -> tuple[list[Any], Gradients]:
    """Our step statistics of each step, and the step-1 gradients."""
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    first: Gradients = {}

    def keep_first(*_: Any) -> None:
        if not first:
            first.update(gradients(model))

    optimizer.register_step_pre_hook(keep_first)
    stats = [
        grpo_step(
            model,
            optimizer,
            groups,
            clip_low=CLIP_LOW,
            clip_high=CLIP_HIGH,
            max_grad_norm=NO_CLIPPING,
            micro_batch_size=sum(len(g) for g in groups),
            pad_token_id=pad_token_id,
        )
        for _ in range(steps)
    ]
    return stats, first


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps of each engine")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="model weights, sampling, noise")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="a model store with SmolLM2 converted"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        parser.error("--steps and --threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import trl

    if not trl.__version__.startswith(TRL_VERSION):
        print(
            f"trl_async: trl {trl.__version__} installed; this script patches internals of "
            f"trl {TRL_VERSION}x (see its docstring) and needs that version",
            file=sys.stderr,
        )
        return 2
    smollm2, problems = find_smollm2(args.model_dir)
    if smollm2 is None:
        print(
            f"trl_async: no converted {DEFAULT_MODEL} ({'; '.join(problems)}). This script "
            "downloads nothing: convert it once (bench/train.py does) or pass --model-dir",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    tokenizer: Any = AutoTokenizer.from_pretrained(smollm2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny-llama"
        tiny_llama(smollm2, folder, args.seed)
        groups = uneven(sample_groups(folder, tokenizer, args.seed), args.seed)
        started = time.perf_counter()
        trl_logs, trl_grads = run_trl(folder, groups, args.steps, args.seed)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ours, our_grads = run_ours(folder, groups, args.steps, pad)
        elapsed = time.perf_counter() - started
    print(f"SmolLM2 tokenizer: {smollm2}")
    print(report(trl_logs, trl_grads, ours, our_grads, args, elapsed))
    return 0


def report(
    trl_logs: list[dict[str, float]],
    trl_grads: Gradients,
    ours: list[Any],
    our_grads: Gradients,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    import trl

    first_trl, first_ours = trl_logs[0], ours[0]
    names = sorted(our_grads.keys() & trl_grads.keys())
    diff = max(float((trl_grads[n] - our_grads[n]).abs().max()) for n in names)
    largest = max(float(our_grads[n].abs().max()) for n in names)
    relative = abs(first_trl["loss"] - first_ours.loss) / max(abs(first_ours.loss), 1e-12)
    trl_s = [e["perf/fwd_bwd_s"] + e["perf/optimizer_s"] for e in trl_logs]
    our_s = [s.seconds for s in ours]
    tokens = first_ours.tokens
    forwarded = first_trl["batch/forwarded_tokens_per_step"]

    def each(seconds: list[float]) -> str:
        return " ".join(f"{s:.2f}" for s in seconds)

    return "\n".join(
        [
            f"AsyncGRPOTrainer (trl {trl.__version__}, CPU stand-ins) vs grpo_step; "
            f"torch {torch.__version__}, {args.threads} thread(s), seed {args.seed}",
            f"batch: {first_ours.sequences} sequences, {tokens} tokens "
            f"({first_ours.policy_tokens} policy); TRL forwards {forwarded:.0f} after packing",
            "",
            "step 1, same weights and batch    TRL             ours",
            f"  loss                            {first_trl['loss']:<15.9f} "
            f"{first_ours.loss:.9f}  (relative difference {relative:.1e})",
            f"  importance ratio, mean          {first_trl['ratio']:<15.8f} "
            f"{first_ours.ratio_mean:.8f}",
            f"  grad norm                       {first_trl['grad_norm']:<15.8f} "
            f"{first_ours.grad_norm:.8f}",
            f"  largest gradient difference     {diff:.1e} over {len(names)} tensors "
            f"(largest gradient {largest:.3g})",
            "",
            f"speed, {args.steps} steps (fwd + bwd + optimizer; TRL's is the CPU stand-in)",
            f"  seconds per step, median        {statistics.median(trl_s):<15.3f} "
            f"{statistics.median(our_s):.3f}",
            f"  tokens per second, median       {tokens / statistics.median(trl_s):<15,.0f} "
            f"{tokens / statistics.median(our_s):,.0f}",
            f"  seconds of each step            TRL {each(trl_s)}; ours {each(our_s)}",
            f"  both engines, start-up included {elapsed:.1f} s",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
