"""Does RL improve the agent beyond SFT? The learning benchmark.

From the SFT checkpoint, N GRPO steps on a fixed procedural training split, then the SFT and
the SFT+RL policies evaluated on the same held-out tasks (greedy decoding): mean F1 and success
with 95% intervals, their paired difference (SFT+RL minus SFT, task by task, bootstrap interval),
the training-split reward per GRPO step and per rollout batch, and turns and calls per task.

It runs the whole loop on the local stack (``astra up``'s services, the embedded vLLM CPU
policy server, SmolLM2-135M), so it measures what a user's ``astra experiment`` does, at a
size chosen to resolve the effect: by default 200 held-out tasks (100 per held-out split) and
6 GRPO steps of 4 groups (learning rate 3e-5, rollouts at temperature 0.7), the policy served
in float32: 47.7 minutes on a 2-core Intel Xeon, RL gain in held-out F1 +0.150 [+0.106,
+0.193] (docs/local-runtime.md has the figures).

```sh
.venv/bin/python bench/learning.py                      # the default size
.venv/bin/python bench/learning.py --grpo-steps 8 --rollout-temperature 1.0
.venv/bin/python bench/learning.py --small              # a quick check of the script (~20 min)
```

Prints a table and writes ``learning.json`` (every figure, the configuration, the machine)
beside the run's report under ``--runs-dir``. This is a benchmark, not a test: it asserts
nothing about the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astra.cli_demo import run_on_stack
from astra.cli_support import interrupt_on_sigterm
from astra.loop import LoopConfig, LoopError
from astra.loop_report import out_of_time
from astra.report import Comparison, comparisons, score_rows
from astra.stack import LocalStack, StackError, StackOptions, embedded_policy_dtype
from astra_common.clients import ServiceError
from astra_common.clients.rollout import RolloutClient
from astra_proto.api.rollout import BatchStatus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Defaults: the settings of the measured runs in docs/local-runtime.md, sized to ~90 minutes.
    parser.add_argument("--grpo-steps", type=int, default=6, help="GRPO optimizer steps.")
    parser.add_argument("--grpo-learning-rate", type=float, default=3e-5)
    parser.add_argument("--grpo-batch-groups", type=int, default=4)
    parser.add_argument("--rollout-temperature", type=float, default=LoopConfig.rollout_temperature)
    parser.add_argument("--group-size", type=int, default=LoopConfig.group_size)
    parser.add_argument(
        "--grpo-max-staleness",
        type=int,
        default=LoopConfig.grpo_max_staleness,
        help="Policy versions a rollout group may lag before it is dropped.",
    )
    parser.add_argument(
        "--grpo-max-tokens",
        type=int,
        default=LoopConfig.grpo_max_tokens,
        help="Longest trained sequence (longer ones are trained on their first tokens).",
    )
    parser.add_argument(
        "--no-gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_false",
        help="Keep activations for the backward pass (faster GRPO steps, more memory).",
    )
    parser.add_argument("--train-envs", type=int, default=LoopConfig.train_envs)
    parser.add_argument("--rollout-envs", type=int, default=LoopConfig.rollout_envs)
    parser.add_argument("--sft-steps", type=int, default=LoopConfig.sft_steps)
    parser.add_argument(
        "--eval-limit", type=int, default=100, help="Held-out tasks per split (two splits)."
    )
    parser.add_argument("--max-rollout-batches", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="A quick check: 16 tasks, 2 steps.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--state-dir", type=Path, default=Path(".astra-learning"))
    parser.add_argument("--policy-url", default=None, help="Use this policy server instead.")
    args = parser.parse_args(argv)
    if args.small:
        args.grpo_steps, args.eval_limit = 2, 8
    if args.grpo_max_staleness < 0:
        parser.error("--grpo-max-staleness must be at least 0")
    if args.grpo_max_tokens < 16:
        parser.error("--grpo-max-tokens must be at least 16")
    for name in ("grpo_steps", "eval_limit", "group_size", "train_envs", "rollout_envs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def loop_config(args: argparse.Namespace) -> LoopConfig:
    """The loop's sizes: enough held-out environments for ``eval_limit`` tasks per split."""
    return LoopConfig(
        seed=args.seed,
        train_envs=args.train_envs,
        heldout_envs=args.eval_limit,
        sft_steps=args.sft_steps,
        rollout_envs=args.rollout_envs,
        group_size=args.group_size,
        grpo_steps=args.grpo_steps,
        grpo_batch_groups=args.grpo_batch_groups,
        grpo_learning_rate=args.grpo_learning_rate,
        grpo_max_staleness=args.grpo_max_staleness,
        grpo_max_tokens=args.grpo_max_tokens,
        grpo_gradient_checkpointing=args.gradient_checkpointing,
        rollout_temperature=args.rollout_temperature,
        max_rollout_batches=args.max_rollout_batches or max(4, 2 * args.grpo_steps),
        eval_limit=args.eval_limit,
    )


def held_out(evaluations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The held-out procedural evaluations of the report, in the order they ran."""
    return {k: v for k, v in evaluations.items() if v.get("suite") == "heldout-procedural"}


def overall_comparison(found: list[Comparison]) -> Comparison | None:
    """The comparison of the last two held-out evaluations over all their tasks."""
    overall = [c for c in found if c.suite == "heldout-procedural" and c.category == "overall"]
    return overall[-1] if overall else None


def figures(
    report_evaluations: dict[str, dict[str, Any]], curves: dict[str, Any]
) -> dict[str, Any]:
    """Every figure of the benchmark, from the run's report (its evaluations and curves)."""
    evaluations = held_out(report_evaluations)
    policies = []
    for label, status in evaluations.items():
        overall = next((row for row in score_rows(status) if row.category == "overall"), None)
        if overall is None:
            continue
        policies.append(
            {
                "policy": label,
                "tasks": overall.n,
                "failed": overall.failed,
                "mean_f1": overall.mean_f1,
                "mean_f1_ci": _interval(overall.f1_interval),
                "success": overall.success_rate,
                "success_ci": _interval(overall.success_interval),
                "turns_per_task": overall.mean_turns,
                "calls_per_task": overall.mean_tool_calls,
                "finish_reasons": dict(
                    Counter(str(e.get("finish_reason")) for e in status.get("entries") or [])
                ),
                "warning": out_of_time(status),
            }
        )
    gain = overall_comparison(comparisons(evaluations))
    steps = [row for row in curves.get("grpo", []) if isinstance(row.get("step"), int | float)]
    return {
        "policies": policies,
        "rl_gain": None
        if gain is None or gain.f1 is None or gain.success is None
        else {
            "before": gain.before,
            "after": gain.after,
            "paired_tasks": gain.f1.paired,
            "f1_difference": gain.f1.difference.estimate,
            "f1_difference_ci": [gain.f1.difference.low, gain.f1.difference.high],
            "success_difference": gain.success.difference.estimate,
            "success_difference_ci": [gain.success.difference.low, gain.success.difference.high],
            "verdict": gain.f1.verdict(gain.before, gain.after),
        },
        "training_reward": [
            {key: value for key, value in row.items() if isinstance(value, int | float | str)}
            for row in steps
        ],
    }


async def rollout_batches(rollout_url: str, since: datetime) -> list[BatchStatus]:
    """The rollout batches of this run (those created since it started), oldest first."""
    async with RolloutClient(rollout_url) as rollout:
        batches = await rollout.list_batches()
    return sorted((b for b in batches if b.created_at >= since), key=lambda b: b.created_at)


def cpu_model(policy_url: str | None) -> str:
    """The processor's name and the dtype the embedded policy server serves in."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.processor() or "unknown")  # fmt: skip
    if policy_url:
        return f"{name}, policy served by {policy_url}"
    return f"{name}, policy served in {embedded_policy_dtype()}"


def _interval(interval: Any) -> list[float] | None:
    return None if interval is None else [interval.low, interval.high]


def print_figures(
    result: dict[str, Any], rollout_f1: list[float | None], temperature: float
) -> None:
    print()
    print(
        f"{'policy':<28} {'tasks':>5} {'mean F1 [95% CI]':>24} {'success [95% CI]':>24}"
        f" {'turns':>6} {'calls':>6}"
    )
    for p in result["policies"]:
        f1 = _with_interval(p["mean_f1"], p["mean_f1_ci"])
        success = _with_interval(p["success"], p["success_ci"])
        print(
            f"{p['policy']:<28} {p['tasks']:>5} {f1:>24} {success:>24}"
            f" {_num(p['turns_per_task']):>6} {_num(p['calls_per_task']):>6}"
        )
    for p in result["policies"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(p["finish_reasons"].items()))
        print(f"{p['policy']}: episodes ended by {reasons or 'nothing recorded'}")
        if p["warning"]:
            print(f"warning ({p['policy']}): {p['warning']}")
    gain = result["rl_gain"]
    if gain is not None:
        low, high = gain["f1_difference_ci"]
        print(
            f"\nRL gain in held-out F1 ({gain['after']} minus {gain['before']}, "
            f"{gain['paired_tasks']} paired tasks): {gain['f1_difference']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}] — {gain['verdict']}"
        )
        low, high = gain["success_difference_ci"]
        print(f"RL gain in success: {gain['success_difference']:+.3f} [{low:+.3f}, {high:+.3f}]")
    print("\ntraining-split reward per GRPO step (mean of the groups trained on):")
    for row in result["training_reward"]:
        print(
            f"  step {row.get('step')}: reward mean {_num(row.get('reward_mean'))}"
            f" std {_num(row.get('reward_std'))} loss {_num(row.get('loss'))}"
        )
    print(
        f"training-split mean F1 per rollout batch (temperature {temperature}): "
        + ", ".join(_num(value) for value in rollout_f1)
    )


def _with_interval(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = loop_config(args)
    options = StackOptions(state_dir=args.state_dir, port_base=0, policy_url=args.policy_url)
    started = time.monotonic()
    started_at = datetime.now(UTC)
    stack = LocalStack(options)
    interrupt_on_sigterm()  # stop the stack on SIGTERM as on Ctrl-C
    try:
        stack.start(report=lambda line: print(line, file=sys.stderr))
        result, markdown = run_on_stack(stack, config, args.runs_dir, "learning")
        batches = asyncio.run(rollout_batches(stack.url("rollout"), started_at))
    except (LoopError, StackError, ServiceError) as exc:
        print(
            f"error: the learning benchmark failed: {exc} (logs in {args.state_dir / 'logs'})",
            file=sys.stderr,
        )
        return 1
    finally:
        stack.stop()
    elapsed = time.monotonic() - started
    report = result.report
    found = figures(report.evaluations, report.curves)
    rollout_f1 = [batch.summary.mean_reward for batch in batches]
    found |= {
        "command": " ".join(["bench/learning.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": asdict(config),
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(args.policy_url),
            "platform": platform.platform(),
        },
        "rollout_batch_mean_f1": rollout_f1,
        "report": str(markdown),
    }
    print_figures(found, rollout_f1, config.rollout_temperature)
    print(f"\n{elapsed / 60:.1f} minutes on {found['machine']['cpu']}; report {markdown}")
    out = markdown.parent / "learning.json"
    out.write_text(json.dumps(found, indent=2) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
