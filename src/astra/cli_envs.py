"""``astra envs``: the environment registry from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from astra.cli_support import console, err_console, service_url, with_client
from astra.cli_support import fail as _fail
from astra.cli_synth import invalid, start_job
from astra_common.clients.synth import SynthClient
from astra_proto import SynthesisJob
from astra_proto.api.synth import BfclSelection, EnvironmentJobRequest, EnvironmentQuery

envs_app = typer.Typer(help="Import, list, show and verify environments.", no_args_is_help=True)

SynthUrl = Annotated[
    str | None, typer.Option("--synth-url", help="synth API (default: the running stack).")
]
Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]


@envs_app.command("import")
def import_benchmark(
    source: Annotated[str, typer.Argument(help="What to import: bfcl.")],
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category", "-c", help="BFCL category (base, miss_func, miss_param, long_context)."
        ),
    ] = None,
    entry: Annotated[
        list[str] | None, typer.Option("--entry", help="Only these entry ids.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most this many entries per category.")
    ] = None,
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Register a benchmark's tasks as environments (BFCL v3 multi-turn): a synth job whose
    source is the benchmark as envhost serves it."""
    if source != "bfcl":
        raise _fail(f"unknown source {source!r}; importable: bfcl")
    try:
        request = bfcl_job(category, limit, entry)
    except ValidationError as exc:
        raise invalid(exc) from None
    url = service_url("synth", synth_url, state_dir)
    start_job(
        request, wait=True, synth_url=url, token=token, state_dir=state_dir,
        summary=lambda job: print_import_summary(job, url),
    )  # fmt: skip


def bfcl_job(
    categories: list[str] | None, limit: int | None, entries: list[str] | None
) -> EnvironmentJobRequest:
    """An environment job that imports these BFCL entries (``ValidationError`` for a
    selection out of bounds)."""
    return EnvironmentJobRequest(
        source="bfcl",
        bfcl=BfclSelection(categories=categories, limit=limit, entries=entries),
    )


def print_import_summary(job: SynthesisJob, url: str) -> None:
    """How many environments an import job registered and how many were already there."""
    existing = int(job.result.get("duplicates", 0))
    created = int(job.result.get("registered", 0)) - existing
    console.print(f"{created} environments registered, {existing} were already there ({url})")


@envs_app.command("list")
def list_environments(
    source: Annotated[
        str | None, typer.Option(help="Only this source (bfcl, procedural...).")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    min_hops: Annotated[int | None, typer.Option(help="At least this many hops.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """List registered environments."""
    try:
        filters = EnvironmentQuery(source=source, domain=domain, split=split, min_hops=min_hops)
    except ValidationError as exc:
        raise invalid(exc) from None
    page = with_client(
        SynthClient, synth_url, state_dir, lambda s: s.list_environments(filters, limit=limit)
    )
    table = Table(title=f"{len(page.items)} of {page.total} environments")
    for column in ("id", "source", "domain", "split", "hops", "tools", "task"):
        table.add_column(column, overflow="fold")
    for item in page.items:
        table.add_row(
            item.id, str(item.source), item.domain, item.split, str(item.hops), str(item.tools),
            item.task[:60],
        )  # fmt: skip
    console.print(table)


@envs_app.command("show")
def show_environment(
    env_id: Annotated[str, typer.Argument(help="Environment id.")],
    synth_url: SynthUrl = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Print one environment's spec (JSON)."""
    spec = with_client(SynthClient, synth_url, state_dir, lambda s: s.get_environment(env_id))
    console.print_json(spec.model_dump_json())


@envs_app.command("verify")
def verify_environment(
    env_id: Annotated[str, typer.Argument(help="Environment id.")],
    synth_url: SynthUrl = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Re-check an environment's certificate from its spec alone: every reference call is
    replayed in envhost's sandbox and compared with the recorded outputs and hashes."""
    report = with_client(
        SynthClient, synth_url, state_dir, lambda s: s.verify_environment(env_id),
        token=token, timeout_s=300,
    )  # fmt: skip
    if report.holds:
        console.print(f"{env_id}: the certificate holds ({report.replays} calls replayed)")
        return
    for problem in report.problems:
        err_console.print(f"  {problem}", highlight=False)
    raise _fail(f"{env_id}: the certificate does not hold ({len(report.problems)} problems)")
