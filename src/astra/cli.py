"""``astra``: run the stack locally and talk to it."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from astra import __version__
from astra.cli_datasets import datasets_app
from astra.cli_demo import LoopConfig, LoopError, connect_hint, first_env, run_on_stack
from astra.cli_envs import bfcl_job, envs_app, print_import_summary
from astra.cli_eval import evaluate
from astra.cli_support import interrupt_on_sigterm
from astra.cli_synth import start_job, synth_app
from astra.cli_train import train_app
from astra.stack import LocalStack, StackError, StackOptions, health_report, read_state

app = typer.Typer(
    name="astra",
    help="ASTRA as services: synthesize tool-use environments and data, serve them over MCP, "
    "and train agents on them.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(envs_app, name="envs")
app.add_typer(synth_app, name="synth")
app.add_typer(datasets_app, name="datasets")
app.add_typer(train_app, name="train")
console = Console()
err_console = Console(stderr=True)

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar="ASTRA_HOME",
        help="Where the local stack keeps its database, Redis data, logs and state file.",
    ),
]


PolicyUrl = Annotated[
    str | None,
    typer.Option(
        envvar="ASTRA_POLICY_URL",
        help="OpenAI-compatible policy endpoint (.../v1) instead of the embedded vLLM server.",
    ),
]
PolicyServerFlag = Annotated[
    bool,
    typer.Option(
        "--policy-server/--no-policy-server",
        help="Start the embedded vLLM policy server (needs .venv-vllm; about 3.5 GB of RAM).",
    ),
]

RunsDir = Annotated[
    Path, typer.Option("--runs-dir", help="Where run reports are written (runs/<id>/).")
]
PolicyModel = Annotated[
    Path | None,
    typer.Option(
        help="Model folder the embedded policy server serves (default: SmolLM2-135M-Instruct, "
        "converted once into the state directory's model store)."
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one readable error line and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"astra {__version__}")


def _serve_until_signal(stack: LocalStack) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        console.print(f"\n{signal.Signals(signum).name} received, stopping the stack")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        stack.check_alive()


def _start(options: StackOptions) -> LocalStack:
    stack = LocalStack(options)
    try:
        with console.status("starting the stack"):
            stack.start(report=console.log)
    except BaseException:
        stack.stop()
        raise
    return stack


def _print_health(state_dir: Path) -> bool:
    state = read_state(state_dir)
    if state is None:
        return False
    table = Table(title=f"astra stack ({state_dir})")
    for column in ("service", "url", "health", "detail"):
        table.add_column(column)
    rows = health_report(state)
    for name, url, healthy, detail in rows:
        mark = "[green]ok[/]" if healthy else "[red]down[/]"
        table.add_row(name, url, mark, detail)
    table.add_row("redis", state["redis_url"], "", "")
    console.print(table)
    return all(healthy for _, _, healthy, _ in rows)


@app.command()
def up(
    state_dir: StateDir = Path(".astra"),
    port_base: Annotated[
        int, typer.Option(help="First of 4 ports (synth, envhost, rollout, trainer); 0 = free.")
    ] = 8100,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="REDIS_URL", help="Use this Redis instead of starting one."),
    ] = None,
    allow_unsandboxed: Annotated[
        bool, typer.Option(help="Run tool code without bubblewrap (development only).")
    ] = False,
    policy_url: PolicyUrl = None,
    policy_server: PolicyServerFlag = True,
    policy_model: PolicyModel = None,
) -> None:
    """Start every service, a Celery worker, Redis and the vLLM policy server locally;
    Ctrl-C stops them all."""
    options = StackOptions(
        state_dir=state_dir,
        port_base=port_base,
        redis_url=redis_url,
        allow_unsandboxed=allow_unsandboxed,
        policy_url=policy_url,
        policy_server=policy_server,
        policy_model_dir=policy_model,
    )
    try:
        stack = _start(options)
    except StackError as exc:
        raise fail(str(exc)) from None
    try:
        _print_health(stack.state_dir)
        console.print("stack running; press Ctrl-C to stop")
        _serve_until_signal(stack)
    except StackError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        stack.stop()
        console.print("stack stopped")


@app.command()
def status(state_dir: StateDir = Path(".astra")) -> None:
    """Show the health of a running local stack (exit code 1 when anything is down)."""
    state_dir = state_dir.resolve()
    if read_state(state_dir) is None:
        raise fail(f"no stack running under {state_dir} (start one with `astra up`)")
    if not _print_health(state_dir):
        raise typer.Exit(1)


@app.command()
def demo(
    state_dir: StateDir = Path(".astra"),
    runs_dir: RunsDir = Path("runs"),
    port_base: Annotated[int, typer.Option(help="First of the stack's ports; 0 = free.")] = 0,
    serve: Annotated[
        bool,
        typer.Option(help="Keep the stack serving after the report, until Ctrl-C."),
    ] = True,
    train_envs: Annotated[int, typer.Option(help="Procedural training environments.")] = 24,
    sft_steps: Annotated[int, typer.Option(help="SFT optimizer steps.")] = 12,
    grpo_steps: Annotated[int, typer.Option(help="GRPO optimizer steps.")] = 2,
    eval_limit: Annotated[int, typer.Option(help="Entries per evaluation category.")] = 8,
    policy_url: PolicyUrl = None,
) -> None:
    """The whole loop on embedded defaults: procedural environments → envhost → gold SFT data
    → SFT → vLLM → rollouts with distractors → GRPO with a policy push → held-out evaluation
    before and after → a report under runs/<id>/."""
    config = LoopConfig(
        train_envs=train_envs, sft_steps=sft_steps, grpo_steps=grpo_steps, eval_limit=eval_limit
    )
    _run_loop_command("demo", config, state_dir, runs_dir, port_base, serve, policy_url)


@app.command()
def experiment(
    state_dir: StateDir = Path(".astra"),
    runs_dir: RunsDir = Path("runs"),
    port_base: Annotated[int, typer.Option(help="First of the stack's ports; 0 = free.")] = 0,
    scale: Annotated[
        float,
        typer.Option(help="Multiply environments, steps and evaluation sizes (e.g. 10 on a GPU)."),
    ] = 1.0,
    bfcl_limit: Annotated[int, typer.Option(help="BFCL multi-turn base entries.")] = 10,
    grpo_steps: Annotated[
        int | None, typer.Option(help="GRPO optimizer steps (default: 2 x scale).")
    ] = None,
    grpo_learning_rate: Annotated[
        float, typer.Option(help="GRPO learning rate.", min=0.0, max=1.0)
    ] = LoopConfig.grpo_learning_rate,
    max_rollout_batches: Annotated[
        int | None,
        typer.Option(help="Rollout batches at most while GRPO waits (default: 2 per step)."),
    ] = None,
    rollout_temperature: Annotated[
        float, typer.Option(help="Sampling temperature of the RL rollouts.", min=0.0, max=2.0)
    ] = LoopConfig.rollout_temperature,
    policy_url: PolicyUrl = None,
) -> None:
    """Base vs SFT vs SFT+RL on held-out procedural environments and BFCL multi-turn base:
    F1 reward, success, turns and calls, with plots (the shape of the paper's Table 2)."""
    base = LoopConfig()
    steps = grpo_steps or max(1, round(base.grpo_steps * scale))
    if steps < 1:
        raise fail("--grpo-steps must be at least 1")
    config = LoopConfig(
        train_envs=round(base.train_envs * scale),
        heldout_envs=round(base.heldout_envs * scale),
        sft_steps=round(base.sft_steps * scale),
        rollout_envs=round(base.rollout_envs * scale),
        grpo_steps=steps,
        grpo_learning_rate=grpo_learning_rate,
        max_rollout_batches=max_rollout_batches or max(base.max_rollout_batches, 2 * steps),
        rollout_temperature=rollout_temperature,
        eval_limit=round(base.eval_limit * scale),
        evaluate_base=True,
        bfcl_limit=round(bfcl_limit * scale),
    )
    _run_loop_command("experiment", config, state_dir, runs_dir, port_base, False, policy_url)


def _run_loop_command(
    kind: str,
    config: LoopConfig,
    state_dir: Path,
    runs_dir: Path,
    port_base: int,
    serve: bool,
    policy_url: str | None,
) -> None:
    options = StackOptions(state_dir=state_dir, port_base=port_base, policy_url=policy_url)
    interrupt_on_sigterm()  # stop the stack on SIGTERM as on Ctrl-C
    try:
        stack = _start(options)
    except StackError as exc:
        raise fail(str(exc)) from None
    try:
        if config.bfcl_limit:
            _import_bfcl(stack)
        result, markdown = run_on_stack(stack, config, runs_dir, kind)
        console.rule("[bold]done")
        console.print(f"report: {markdown} (plots beside it)")
        console.print(connect_hint(stack, first_env(stack, result.envs_job)))
        if serve:
            console.print("the stack keeps serving; press Ctrl-C to stop it")
            _serve_until_signal(stack)
    except (LoopError, StackError) as exc:
        raise fail(f"{kind} failed at {exc} (logs in {stack.state_dir / 'logs'})") from None
    finally:
        stack.stop()


def _import_bfcl(stack: LocalStack) -> None:
    synth = stack.url("synth")
    start_job(
        bfcl_job(["base"], None, None), wait=True, synth_url=synth, token=None,
        state_dir=stack.state_dir, summary=lambda job: print_import_summary(job, synth),
    )  # fmt: skip


app.command("eval")(evaluate)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
