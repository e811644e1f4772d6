"""``astra synth``: environment-synthesis jobs from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astra.api_client import ApiClient, ApiError, service_url

synth_app = typer.Typer(help="Run and inspect synthesis jobs.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

SynthUrl = Annotated[
    str | None, typer.Option("--synth-url", help="synth API (default: the running stack).")
]
Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]
JobId = Annotated[str, typer.Argument(help="Job id.")]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


@synth_app.command("run")
def run_job(
    source: Annotated[
        str | None, typer.Option(help="procedural (default), qa or knowledge.")
    ] = None,
    count: Annotated[int, typer.Option(help="Environments to produce.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the procedural source.")] = 0,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", help="Only these domains (repeatable).")
    ] = None,
    hops: Annotated[
        list[int] | None, typer.Option("--hops", help="Hop counts to draw from (repeatable).")
    ] = None,
    split: Annotated[str, typer.Option(help="train, heldout_entities, heldout_compositions.")] = (
        "train"
    ),
    qa: Annotated[
        Path | None, typer.Option(help="QA pairs as JSONL (source qa).", exists=True)
    ] = None,
    knowledge: Annotated[
        list[Path] | None, typer.Option(help="Knowledge text files (source knowledge).")
    ] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Start an environment-synthesis job and follow its progress."""
    body: dict[str, Any] = {"count": count, "seed": seed, "split": split}
    optional = {
        "source": source, "domains": domain, "hops": hops, "llm_base_url": llm_base_url,
        "llm_model": llm_model,
        "qa_jsonl": qa.read_text() if qa else None,
        "knowledge": [path.read_text() for path in knowledge] if knowledge else None,
    }  # fmt: skip
    body |= {key: value for key, value in optional.items() if value is not None}
    try:
        with ApiClient(service_url("synth", synth_url, state_dir), token) as client:
            job = client.post("/v1/jobs/environments", body).json()
            console.print(f"job {job['id']} started ({job['params']['source']})")
            if wait:
                job = follow(client, job["id"])
    except ApiError as exc:
        raise _fail(str(exc)) from None
    if wait:
        _print_summary(job)
        if job["state"] != "succeeded":
            raise _fail(f"job {job['id']} {job['state']}: {job.get('error') or ''}".strip())


def follow(client: ApiClient, job_id: str, poll_s: float = 0.5) -> dict[str, Any]:
    """Show the job's stages as progress bars until it ends; returns the final job."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rejected]}"),
        TimeElapsedColumn(),
    )
    bars: dict[str, Any] = {}
    with Progress(*columns, console=console) as progress:
        while True:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
            for stage in job["progress"]:
                rejected = sum(stage["rejected"].values())
                note = f"{rejected} rejected" if rejected else ""
                if stage["stage"] not in bars:
                    bars[stage["stage"]] = progress.add_task(
                        stage["stage"], total=stage["total"], rejected=note
                    )
                total = stage["total"] or _first_total(job["progress"])
                progress.update(
                    bars[stage["stage"]], completed=stage["done"], total=total, rejected=note
                )
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(poll_s)


def _first_total(stages: list[dict[str, Any]]) -> int | None:
    return next((stage["total"] for stage in stages if stage["total"]), None)


def _print_summary(job: dict[str, Any]) -> None:
    stats = job.get("result") or {}
    console.print(
        f"job {job['id']}: {job['state']}; {stats.get('registered', 0)} environments registered"
        + (f" ({stats['duplicates']} already there)" if stats.get("duplicates") else "")
    )


@synth_app.command("jobs")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """List synthesis jobs, newest first."""
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    try:
        with ApiClient(service_url("synth", synth_url, state_dir)) as client:
            page = client.get("/v1/jobs", params=params)
    except ApiError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"{len(page['items'])} jobs")
    for column in ("id", "kind", "state", "source", "registered", "created"):
        table.add_column(column, overflow="fold")
    for job in page["items"]:
        table.add_row(
            job["id"], job["kind"], job["state"], str(job["params"].get("source")),
            str(job["result"].get("registered", 0)), job["created_at"][:19],
        )  # fmt: skip
    console.print(table)


@synth_app.command("show")
def show_job(
    job_id: JobId, synth_url: SynthUrl = None, state_dir: StateDir = Path(".astra")
) -> None:
    """Print one job (JSON)."""
    try:
        with ApiClient(service_url("synth", synth_url, state_dir)) as client:
            job = client.get(f"/v1/jobs/{job_id}")
    except ApiError as exc:
        raise _fail(str(exc)) from None
    console.print_json(json.dumps(job))


@synth_app.command("cancel")
def cancel_job(
    job_id: JobId, synth_url: SynthUrl = None, token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:  # fmt: skip
    """Cancel a job that has not ended."""
    try:
        with ApiClient(service_url("synth", synth_url, state_dir), token) as client:
            job = client.post(f"/v1/jobs/{job_id}/cancel", {}).json()
    except ApiError as exc:
        raise _fail(str(exc)) from None
    console.print(f"job {job['id']}: {job['state']}")


@synth_app.command("stats")
def job_stats(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """A job's yield: hops, scenario types, tools per environment, domains, rejections."""
    try:
        with ApiClient(service_url("synth", synth_url, state_dir)) as client:
            report = client.get(f"/v1/jobs/{job_id}/stats")
    except ApiError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(report))
        return
    stats = report["stats"]
    console.print(
        f"job {job_id} ({report['state']}): {stats.get('registered', 0)} registered, "
        f"mean hops {stats.get('mean_hops')}, mean tools {stats.get('mean_tools')}"
    )
    table = Table(title="progress")
    for column in ("stage", "done", "total", "rejected"):
        table.add_column(column)
    for stage in report["progress"]:
        rejected = ", ".join(f"{k}: {v}" for k, v in stage["rejected"].items())
        table.add_row(stage["stage"], str(stage["done"]), str(stage["total"] or ""), rejected)
    console.print(table)
    for name in ("domains", "scenario_types", "hops", "tools_per_environment", "splits"):
        counts = stats.get(name) or {}
        if counts:
            console.print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if stats.get("rejected"):
        console.print("rejected: " + ", ".join(f"{k}={v}" for k, v in stats["rejected"].items()))
