"""``astra eval``: run an evaluation suite through the rollout service, with a progress bar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astra.cli_support import fail, with_client
from astra.report import format_number, format_score, score_rows
from astra.stats import RESAMPLES, SEED
from astra_common.clients.rollout import RolloutClient
from astra_proto.api.rollout import (
    EpisodeLimits,
    EvaluationRequest,
    EvaluationStatus,
    PolicyEndpoint,
)

console = Console()


def _progress(show: bool) -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("mean F1 {task.fields[reward]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, disable=not show)


def _reward(mean: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f}"


async def follow_evaluation(
    rollout: RolloutClient, request: EvaluationRequest, *, poll_s: float = 1.0, show: bool = True
) -> EvaluationStatus:
    """Start an evaluation and follow it to its end (with a progress bar when ``show``);
    returns its final status."""
    status = await rollout.start_evaluation(request)
    with _progress(show) as progress:
        bar = progress.add_task(request.suite, total=status.total, reward="-")
        while True:
            mean = status.overall.mean_reward if status.overall is not None else None
            progress.update(bar, completed=status.done, reward=_reward(mean))
            if status.state.terminal:
                return status
            await asyncio.sleep(poll_s)
            status = await rollout.evaluation_status(status.id)


def score_table(status: Mapping[str, Any]) -> Table:
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
            format_number(row.mean_turns, 2), format_number(row.mean_tool_calls, 2),
        )  # fmt: skip
    return table


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
    try:
        request = EvaluationRequest(
            suite=suite,
            categories=category or None,
            limit=limit,
            policy=PolicyEndpoint(base_url=policy_url or None, model=model or None),
            limits=EpisodeLimits(max_turns=max_turns) if max_turns else None,
        )
    except ValidationError as exc:
        raise fail(_invalid(exc)) from None
    final = with_client(
        RolloutClient,
        rollout_url,
        state_dir,
        lambda rollout: follow_evaluation(rollout, request),
        token=token,
    )
    status = final.model_dump(mode="json")
    console.print(score_table(status))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(status, indent=2) + "\n")
        console.print(f"per-entry results in {out}")
    if final.state != "succeeded":
        raise fail(f"evaluation {final.state}: {final.error}")


def _invalid(error: ValidationError) -> str:
    """A rejected request's problems on one line (``field: message``, joined by ``; ``)."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else str(problem["msg"]))
    return "; ".join(parts)
