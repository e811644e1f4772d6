"""GRPO step cost: this trainer's step vs TRL's GRPOTrainer, same model, prompts, sizes, run.

Both sides use the default policy (SmolLM2-135M-Instruct from the model store), the same
prompts, ``--groups`` groups of ``--group-size`` rollouts of at most ``--new-tokens``
tokens, the same reward rule, no KL, token-level loss. Ours: sampling with transformers
``generate`` (as a stand-in for vLLM) then ``grpo_step`` on the trajectories; TRL: its
``GRPOTrainer`` steps (its own generation + loss + optimizer). Printed: seconds per step
with and without sampling, tokens/s of the optimizer step, and ours/TRL ratios. Runs on a GPU
when one is present (bf16 autocast there), else on the CPU.

    .venv/bin/python bench/train.py --steps 2 --groups 2 --group-size 4 --new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from astra_trainer.grpo.encoding import EncodedTrajectory
from astra_trainer.grpo.step import grpo_step
from astra_trainer.models import ModelStore

CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Prague"]
SYSTEM = "Answer in one short sentence."


def reward_rule(text: str) -> float:
    """The shared reward: shorter answers that name a city score higher (any rule will do)."""
    named = any(city in text for city in CITIES)
    return (1.0 if named else 0.0) + 1.0 / (1 + len(text.split()))


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Describe {CITIES[i % len(CITIES)]} in a few words."},
        ]
        for i in range(n)
    ]


def ours(folder: Path, args: argparse.Namespace, device: str) -> dict[str, float]:
    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    end: int = tokenizer.convert_tokens_to_ids("<|im_end|>")
    step_s, total_s, tokens = [], [], []
    for step in range(args.steps):
        started = time.perf_counter()
        groups: list[list[EncodedTrajectory]] = []
        for g, messages in enumerate(prompts(args.groups)):
            prompt = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            ids = torch.tensor([prompt], device=device)
            with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=device == "cuda"):
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_k=0,
                    max_new_tokens=args.new_tokens,
                    num_return_sequences=args.group_size,
                    output_logits=True,
                    return_dict_in_generate=True,
                    eos_token_id=end,
                    pad_token_id=end,
                )
            logprobs = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)
            group = []
            for i in range(args.group_size):
                completion = out.sequences[i, len(prompt) :].tolist()
                if end in completion:
                    completion = completion[: completion.index(end) + 1]
                behaviour = [float(logprobs[i, t, tok]) for t, tok in enumerate(completion)]
                text = tokenizer.decode(completion, skip_special_tokens=True)
                group.append(
                    EncodedTrajectory(
                        record_id=f"s{step}g{g}r{i}",
                        group_id=f"g{g}",
                        reward=reward_rule(text),
                        policy_version=step,
                        input_ids=list(prompt) + completion,
                        loss_mask=[0] * len(prompt) + [1] * len(completion),
                        behaviour_logprobs=[0.0] * len(prompt) + behaviour,
                        turns=1,
                        calls=0,
                    )
                )
            groups.append(group)
        sampled = time.perf_counter()
        with torch.autocast(device, torch.bfloat16, enabled=device == "cuda"):
            stats = grpo_step(
                model,
                optimizer,
                groups,
                clip_low=0.2,
                clip_high=0.2,
                max_grad_norm=1.0,
                micro_batch_size=args.group_size * args.groups,
                pad_token_id=end,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        done = time.perf_counter()
        step_s.append(done - sampled)
        total_s.append(done - started)
        tokens.append(stats.tokens)
    return _summary(step_s, total_s, tokens)


def trl(folder: Path, args: argparse.Namespace, device: str) -> dict[str, float]:
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers import TrainerCallback
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.started)

    def reward(completions: list[Any], **_: Any) -> list[float | None]:
        return [reward_rule(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    data = Dataset.from_list([{"prompt": p} for p in prompts(args.groups)] * args.steps)
    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            max_steps=args.steps,
            learning_rate=1e-6,
            beta=0.0,
            loss_type="dapo",
            num_generations=args.group_size,
            per_device_train_batch_size=args.group_size * args.groups,
            max_completion_length=args.new_tokens,
            temperature=1.0,
            report_to="none",
            logging_steps=1,
            save_strategy="no",
            use_cpu=device == "cpu",
            bf16=device == "cuda",
            activation_checkpointing=False,
            disable_tqdm=True,
            shuffle_dataset=False,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
        trainer.train()
    return {"step_s_incl_sampling": statistics.fmean(times)}


def _summary(step_s: list[float], total_s: list[float], tokens: list[int]) -> dict[str, float]:
    return {
        "step_s": statistics.fmean(step_s),
        "step_s_incl_sampling": statistics.fmean(total_s),
        "step_tokens_per_s": sum(tokens) / sum(step_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--model-dir", type=Path, default=Path(".astra/models"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = ModelStore(args.model_dir).ensure_default()
    torch.manual_seed(0)
    mine = ours(folder, args, device)
    torch.manual_seed(0)
    theirs = trl(folder, args, device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(
        json.dumps(
            {
                "device": name,
                "args": vars(args) | {"model_dir": str(args.model_dir)},
                "astra": mine,
                "trl_grpo_trainer": theirs,
            },
            indent=2,
        )
    )
    ratio = theirs["step_s_incl_sampling"] / mine["step_s_incl_sampling"]
    print(
        f"step time incl. sampling: astra {mine['step_s_incl_sampling']:.2f} s, "
        f"TRL {theirs['step_s_incl_sampling']:.2f} s (TRL/astra = {ratio:.2f}x)"
    )
    print(
        f"astra optimizer step alone: {mine['step_s']:.2f} s, "
        f"{mine['step_tokens_per_s']:.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
