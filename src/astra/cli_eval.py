"""``astra eval``: run an evaluation suite through the rollout service, with a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astra.api_client import ApiClient, ApiError, service_url
from astra.report import format_score, score_rows
from astra.stats import RESAMPLES, SEED

console = Console()
err_console = Console(stderr=True)

TERMINAL = ("succeeded", "failed", "cancelled")


def run_evaluation(
    client: ApiClient, body: dict[str, Any], poll_s: float = 1.0, show: bool = True
) -> dict[str, Any]:
    """Start an evaluation and follow it to its end; returns its final status."""
    status: dict[str, Any] = client.post("/v1/evaluations", body).json()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("mean F1 {task.fields[reward]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show) as progress:
        bar = progress.add_task(f"{body['suite']}", total=status["total"], reward="-")
        while True:
            overall = status.get("overall") or {}
            reward = overall.get("mean_reward")
            progress.update(
                bar, completed=status["done"], reward="-" if reward is None else f"{reward:.3f}"
            )
            if status["state"] in TERMINAL:
                return status
            time.sleep(poll_s)
            status = client.get(f"/v1/evaluations/{status['id']}")


def score_table(status: dict[str, Any]) -> Table:
    """Scores per category and overall: n, mean F1 with its 95% bootstrap interval, success
    with Wilson's 95% interval (from the per-entry rows), turns and calls."""
    table = Table(
        box=box.SIMPLE_HEAD,  # no column rules, so the intervals fit an 80-column terminal
        pad_edge=False,
        title=f"{status['suite']} — {status['model']} ({status['state']})",
        caption=f"95% intervals: F1 bootstrap ({RESAMPLES:,} resamples, seed {SEED}), "
        "success Wilson",
    )
    table.add_column("category", overflow="fold", min_width=10)  # folds before numbers are cut
    for column in ("n", "failed", "mean F1 [95% CI]", "success [95% CI]", "turns", "calls"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in score_rows(status):
        table.add_row(
            row.category, str(row.n), str(row.failed),
            format_score(row.mean_f1, row.f1_interval),
            format_score(row.success_rate, row.success_interval),
            _fmt(row.mean_turns, 2), _fmt(row.mean_tool_calls, 2),
        )  # fmt: skip
    return table


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def evaluate(
    suite: Annotated[str, typer.Argument(help="heldout-procedural or bfcl-multi-turn.")],
    category: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Only these categories.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Entries per category.")] = 50,
    policy_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible policy endpoint (.../v1).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the policy endpoint.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="Policy calls per episode.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the full result (per entry) as JSON here.")
    ] = None,
    rollout_url: Annotated[
        str | None, typer.Option("--rollout-url", help="rollout API (default: the stack).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")
    ] = None,
    state_dir: Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)] = (
        Path(".astra")
    ),
) -> None:
    """Evaluate a policy on a suite: scores per category and per entry."""
    body: dict[str, Any] = {"suite": suite, "limit": limit}
    if category:
        body["categories"] = category
    if policy_url or model:
        body["policy"] = {k: v for k, v in {"base_url": policy_url, "model": model}.items() if v}
    if max_turns:
        body["limits"] = {"max_turns": max_turns}
    try:
        with ApiClient(service_url("rollout", rollout_url, state_dir), token) as client:
            status = run_evaluation(client, body)
    except ApiError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(score_table(status))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(status, indent=2) + "\n")
        console.print(f"per-entry results in {out}")
    if status["state"] != "succeeded":
        err_console.print(
            f"[bold red]error:[/] evaluation {status['state']}: {status.get('error')}"
        )
        raise typer.Exit(1)
