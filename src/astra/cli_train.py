"""``astra train``: SFT and GRPO runs on this machine, as trainer processes.

The CLI does not import trainer code: it writes the run config as JSON and runs
``python -m astra_trainer.cli`` (the same entry point the trainer service starts), passing
its exit code through (0 done, 1 training failed, 2 bad input).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

train_app = typer.Typer(
    help="Train policies: SFT on datasets, GRPO from the stream.", no_args_is_help=True
)
err_console = Console(stderr=True)

ModelDir = Annotated[
    Path, typer.Option("--model-dir", help="Model store (base models are converted here).")
]
BaseModel = Annotated[
    str, typer.Option("--base-model", help="Model store name or a local model folder.")
]


def _run(kind: str, run_dir: Path, config: dict[str, Any], model_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / f"{kind}-request.json"
    config_file.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    command = [
        sys.executable,
        "-m",
        "astra_trainer.cli",
        kind,
        "--config",
        str(config_file),
        "--model-dir",
        str(model_dir),
    ]
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 130
    if code != 0:
        err_console.print(f"[bold red]error:[/] {kind} run failed (exit {code}); see above")
        raise typer.Exit(code)
    err_console.print(f"{kind} run finished: {run_dir}")


@train_app.command("sft")
def sft(
    dataset: Annotated[Path, typer.Option("--dataset", help="Exported dataset (file or folder).")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Checkpoints, metrics, final model.")],
    base_model: BaseModel = "SmolLM2-135M-Instruct",
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; -1 trains --epochs.")] = -1,
    epochs: Annotated[float, typer.Option(help="Epochs when --max-steps is -1.")] = 2.0,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 4,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-6,
    max_length: Annotated[int, typer.Option(help="Tokens per sample (longer are cut).")] = 4096,
    model_dir: ModelDir = Path(".astra/models"),
) -> None:
    """Supervised fine-tuning with assistant-only loss; the model lands in RUN_DIR/final."""
    if not dataset.exists():
        err_console.print(f"[bold red]error:[/] no dataset at {dataset}")
        raise typer.Exit(2)
    config = {
        "dataset": str(dataset.resolve()),
        "run_dir": str(run_dir.resolve()),
        "base_model": base_model,
        "max_steps": max_steps,
        "num_epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": max_length,
    }
    _run("sft", run_dir, config, model_dir)


@train_app.command("grpo")
def grpo(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Checkpoints, metrics, status.")],
    redis_url: Annotated[str, typer.Option("--redis-url", envvar="REDIS_URL")] = (
        "redis://127.0.0.1:6379/0"
    ),
    base_model: BaseModel = "SmolLM2-135M-Instruct",
    group_size: Annotated[int, typer.Option(help="Rollouts per task.")] = 4,
    batch_groups: Annotated[int, typer.Option(help="Valid groups per step.")] = 2,
    buffer_groups: Annotated[int, typer.Option(help="Extra valid groups kept (< batch).")] = 1,
    learning_rate: Annotated[float, typer.Option(help="Learning rate.")] = 2e-6,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    policy_server: Annotated[
        str, typer.Option(help="vLLM server to reload weights into after each step.")
    ] = "",
    served_model: Annotated[str | None, typer.Option(help="Model name at that server.")] = None,
    model_dir: ModelDir = Path(".astra/models"),
) -> None:
    """Online GRPO from the trajectory stream until --max-steps or Ctrl-C."""
    config = {
        "run_dir": str(run_dir.resolve()),
        "redis_url": redis_url,
        "base_model": base_model,
        "group_size": group_size,
        "batch_groups": batch_groups,
        "buffer_groups": buffer_groups,
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "policy_server_url": policy_server,
        "served_model": served_model,
    }
    _run("grpo", run_dir, config, model_dir)
