"""``astra synth``: synthesis jobs from the command line (environments, toolsets, tasks,
teacher trajectories)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astra.cli_rejections import EXCERPT_CHARS, one_line, print_rejections
from astra.cli_support import console, with_client
from astra.cli_support import fail as _fail
from astra_common.clients.synth import SynthClient
from astra_proto import JobState, StageProgress, SynthesisJob
from astra_proto.api.synth import (
    EnvironmentJobRequest,
    JobRequest,
    JsonToolsSource,
    McpSource,
    OpenApiSource,
    TaskJobRequest,
    TeacherEndpoint,
    ToolsetRequest,
    TrajectoryJobRequest,
    TrajectorySettings,
)

synth_app = typer.Typer(help="Run and inspect synthesis jobs.", no_args_is_help=True)

SynthUrl = Annotated[
    str | None, typer.Option("--synth-url", help="synth API (default: the running stack).")
]
Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]
JobId = Annotated[str, typer.Argument(help="Job id.")]


def invalid(error: ValidationError) -> typer.Exit:
    """Print a request's validation problems on one line (``field: message``); the exit."""
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return _fail("; ".join(parts))


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
    try:
        request = EnvironmentJobRequest(
            source=source, count=count, seed=seed, split=split, domains=domain, hops=hops,
            llm_base_url=llm_base_url, llm_model=llm_model,
            qa_jsonl=qa.read_text() if qa else None,
            knowledge=[path.read_text() for path in knowledge] if knowledge else None,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc) from None
    start_job(
        request, wait=wait, synth_url=synth_url, token=token, state_dir=state_dir,
        summary=_print_summary,
    )  # fmt: skip


def start_job(
    request: JobRequest,
    *,
    wait: bool,
    synth_url: str | None,
    token: str | None,
    state_dir: Path,
    summary: Callable[[SynthesisJob], None],
) -> SynthesisJob:
    """Start the job ``request`` asks for, follow it with progress bars when ``wait``, print
    ``summary`` of the ended job and return it (the started job when not ``wait``); exit 1
    with the reason when it is refused or does not succeed."""

    async def work(synth: SynthClient) -> SynthesisJob:
        job = await synth.start_job(request)
        source = job.params.get("source")
        console.print(f"job {job.id} started" + (f" ({source})" if source else ""))
        if wait:
            job = await follow_job(synth, job.id)
            summary(job)
            await print_rejections(synth, job)
        return job

    job = with_client(SynthClient, synth_url, state_dir, work, token=token)
    if wait and job.state != JobState.SUCCEEDED:
        raise _fail(f"job {job.id} {job.state}: {job.error or ''}".strip())
    return job


async def follow_job(synth: SynthClient, job_id: str, poll_s: float = 0.5) -> SynthesisJob:
    """Show the job's stages as progress bars until it ends; returns the final job."""
    bars: dict[str, Any] = {}
    with _progress() as progress:
        while True:
            job = await synth.get_job(job_id)
            for stage in job.progress:
                _show_stage(progress, bars, stage, job.progress)
            if job.state.terminal:
                return job
            await asyncio.sleep(poll_s)


def _progress() -> Progress:
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rejected]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console)


def _show_stage(
    progress: Progress, bars: dict[str, Any], stage: StageProgress, stages: list[StageProgress]
) -> None:
    rejected = sum(stage.rejected.values())
    note = f"{rejected} rejected" if rejected else ""
    if stage.stage not in bars:
        bars[stage.stage] = progress.add_task(stage.stage, total=stage.total, rejected=note)
    total = stage.total
    if total is None:  # a stage that sees what the first one produced
        total = next((s.total for s in stages if s.total), None)
    progress.update(bars[stage.stage], completed=stage.done, total=total, rejected=note)


def _print_summary(job: SynthesisJob) -> None:
    stats = job.result
    console.print(
        f"job {job.id}: {job.state}; {stats.get('registered', 0)} environments registered"
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
    if state is not None and state not in [s.value for s in JobState]:
        raise _fail(f"unknown state {state!r}; the states are {[s.value for s in JobState]}")
    wanted = JobState(state) if state is not None else None
    page = with_client(
        SynthClient, synth_url, state_dir, lambda s: s.list_jobs(state=wanted, limit=limit)
    )
    table = Table(title=f"{len(page.items)} jobs")
    for column in ("id", "kind", "state", "source", "registered", "created"):
        table.add_column(column, overflow="fold")
    for job in page.items:
        table.add_row(
            job.id, job.kind, job.state, str(job.params.get("source")),
            str(job.result.get("registered", 0)), job.created_at.isoformat()[:19],
        )  # fmt: skip
    console.print(table)


@synth_app.command("show")
def show_job(
    job_id: JobId, synth_url: SynthUrl = None, state_dir: StateDir = Path(".astra")
) -> None:
    """Print one job (JSON), then what it rejected and why."""

    async def work(synth: SynthClient) -> None:
        job = await synth.get_job(job_id)
        console.print_json(job.model_dump_json())
        await print_rejections(synth, job)

    with_client(SynthClient, synth_url, state_dir, work)


@synth_app.command("rejections")
def list_rejections(
    job_id: JobId,
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many rows.")] = 0,
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """The items a job rejected, oldest first: stage, reason, item, message, reply excerpt."""
    page = with_client(
        SynthClient, synth_url, state_dir,
        lambda s: s.job_rejections(
            job_id, stage=stage or None, reason=reason or None, limit=limit, offset=offset
        ),
    )  # fmt: skip
    table = Table(title=f"{len(page.items)} of {page.total} rejections of {job_id}")
    for column in ("stage", "reason", "item", "message", "excerpt"):
        table.add_column(column, overflow="fold")
    for record in page.items:
        table.add_row(
            record.stage, record.reason, record.item or "", record.message or "",
            one_line(record.excerpt or "", EXCERPT_CHARS),
        )  # fmt: skip
    console.print(table)


@synth_app.command("cancel")
def cancel_job(
    job_id: JobId, synth_url: SynthUrl = None, token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:  # fmt: skip
    """Cancel a job that has not ended."""
    job = with_client(
        SynthClient, synth_url, state_dir, lambda s: s.cancel_job(job_id), token=token
    )
    console.print(f"job {job.id}: {job.state}")


@synth_app.command("stats")
def job_stats(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """A job's yield: hops, scenario types, tools per environment, domains, rejections."""
    report = with_client(SynthClient, synth_url, state_dir, lambda s: s.job_stats(job_id))
    if as_json:
        console.print_json(report.model_dump_json())
        return
    stats = report.stats
    console.print(
        f"job {job_id} ({report.state}): {stats.get('registered', 0)} registered, "
        f"mean hops {stats.get('mean_hops')}, mean tools {stats.get('mean_tools')}"
    )
    table = Table(title="progress")
    for column in ("stage", "done", "total", "rejected"):
        table.add_column(column)
    for stage in report.progress:
        rejected = ", ".join(f"{k}: {v}" for k, v in stage.rejected.items())
        table.add_row(stage.stage, str(stage.done), str(stage.total or ""), rejected)
    console.print(table)
    for name in ("domains", "scenario_types", "hops", "tools_per_environment", "splits"):
        counts = stats.get(name) or {}
        if counts:
            console.print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if stats.get("rejected"):
        console.print("rejected: " + ", ".join(f"{k}={v}" for k, v in stats["rejected"].items()))


@synth_app.command("toolset")
def register_toolset(
    toolset_id: Annotated[str, typer.Argument(help="Id of the new toolset.")],
    mcp: Annotated[
        list[str] | None, typer.Option("--mcp", help="MCP server URL (repeatable).")
    ] = None,
    openapi: Annotated[
        list[Path] | None, typer.Option("--openapi", help="OpenAPI document, JSON (repeatable).")
    ] = None,
    json_tools: Annotated[
        list[Path] | None,
        typer.Option("--json-tools", help="JSON tool list; the file name names it (repeatable)."),
    ] = None,
    min_tools: Annotated[int, typer.Option(help="Servers with fewer tools are dropped.")] = 3,
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Register a toolset from MCP servers, OpenAPI documents and JSON tool lists."""
    try:
        documents = [json.loads(p.read_text()) for p in openapi or []]
        tool_lists = [(p.stem, json.loads(p.read_text())) for p in json_tools or []]
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read a tool document: {exc}") from None
    try:
        request = ToolsetRequest(
            id=toolset_id,
            mcp=[McpSource(url=url) for url in mcp or []],
            openapi=[OpenApiSource(document=document) for document in documents],
            json_tools=[JsonToolsSource(name=name, tools=tools) for name, tools in tool_lists],
            settings=TrajectorySettings(min_tools_per_server=min_tools),
        )
    except ValidationError as exc:
        raise invalid(exc) from None
    toolset = with_client(
        SynthClient, synth_url, state_dir, lambda s: s.register_toolset(request), token=token
    )
    table = Table(title=f"toolset {toolset.id}")
    for column in ("server", "source", "tools"):
        table.add_column(column)
    for server in toolset.servers:
        table.add_row(server.name, server.source, str(len(server.tools)))
    console.print(table)
    for rejection in toolset.rejected:
        console.print(f"dropped {rejection.subject}: {rejection.reason}", highlight=False)


@synth_app.command("tasks")
def task_job(
    toolset_id: Annotated[str, typer.Argument(help="A registered toolset.")],
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Synthesize tasks for a toolset (graph, chains, tasks) and store them with it."""
    try:
        request = TaskJobRequest(
            toolset_id=toolset_id, llm_base_url=llm_base_url, llm_model=llm_model
        )
    except ValidationError as exc:
        raise invalid(exc) from None

    def summary(job: SynthesisJob) -> None:
        tasks = job.result.get("tasks") or {}
        console.print(f"job {job.id}: {job.state}; {tasks.get('tasks', 0)} tasks kept")

    start_job(
        request, wait=wait, synth_url=synth_url, token=token, state_dir=state_dir,
        summary=summary,
    )  # fmt: skip


@synth_app.command("trajectories")
def trajectory_job(
    toolset_id: Annotated[str, typer.Argument(help="A registered toolset.")],
    teacher_url: Annotated[str, typer.Option(help="Teacher's OpenAI-compatible endpoint.")],
    teacher_model: Annotated[str, typer.Option(help="Teacher model name.")],
    stored_tasks: Annotated[
        bool, typer.Option(help="Play the toolset's stored tasks instead of synthesizing.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the job id).")] = None,
    max_tasks: Annotated[int, typer.Option(help="Play at most this many tasks.")] = 1000,
    judge_cutoff: Annotated[float, typer.Option(help="Keep samples scoring at least.")] = 0.75,
    failure_rate: Annotated[float, typer.Option(help="Emulated calls failed on purpose.")] = 0.2,
    llm_base_url: Annotated[
        str | None, typer.Option(help="LLM of tasks, emulator and judge.")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Tasks -> teacher trajectories (real tools over MCP, emulated document-only tools) ->
    seven-part judge -> SFT dataset."""
    try:
        request = TrajectoryJobRequest(
            toolset_id=toolset_id,
            teacher=TeacherEndpoint(base_url=teacher_url, model=teacher_model),
            tasks="stored" if stored_tasks else "synthesize",
            name=name, max_tasks=max_tasks, judge_cutoff=judge_cutoff,
            emulator_failure_rate=failure_rate,
            llm_base_url=llm_base_url, llm_model=llm_model,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc) from None

    def summary(job: SynthesisJob) -> None:
        result = job.result
        dataset = result.get("dataset")
        teacher = result.get("teacher") or {}
        console.print(
            f"job {job.id}: {job.state}; {teacher.get('done', 0)} played, "
            f"{(result.get('judge') or {}).get('kept', 0)} kept by the judge"
            + (f"; dataset {dataset['name']} at {dataset['path']}" if dataset else ""),
            highlight=False,
        )

    start_job(
        request, wait=wait, synth_url=synth_url, token=token, state_dir=state_dir,
        summary=summary,
    )  # fmt: skip
