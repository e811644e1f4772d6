"""``astra datasets``: export SFT datasets (JSONL + Parquet + card) for TRL.

Mounted by the main CLI as ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from astra.api_client import ApiClient, ApiError, service_url
from astra.cli_support import fail as _fail
from astra_proto import Trajectory

datasets_app = typer.Typer(help="Export SFT datasets.", no_args_is_help=True)
console = Console(soft_wrap=True)

Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]


@datasets_app.callback()
def datasets_group() -> None:
    """Export SFT datasets (JSONL + Parquet + dataset card)."""


@datasets_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    trajectories: Annotated[
        Path | None,
        typer.Option(help="A JSONL file of Trajectory records to export as they are."),
    ] = None,
    gold: Annotated[
        int | None,
        typer.Option(
            help="Build this many gold trajectories from procedural environments, played on "
            "the running envhost (no LLM)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the procedural environments.")] = 0,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: folder name).")] = None,
    synth_url: Annotated[str | None, typer.Option("--synth-url", help="synth API.")] = None,
    envhost_url: Annotated[str | None, typer.Option("--envhost-url", help="envhost.")] = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Write a dataset that `datasets.load_dataset(OUT)` reads and TRL's SFTTrainer trains on."""
    if (trajectories is None) == (gold is None):
        raise _fail("give exactly one of --trajectories FILE or --gold N")
    from astra_synth.trajectories import export_dataset, gold_dataset  # late: heavy imports

    if trajectories is not None:
        records = _read_trajectories(trajectories)
        try:
            manifest = export_dataset(records, out, name=name)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    else:
        assert gold is not None
        if gold < 1:
            raise _fail("--gold must be at least 1")
        from astra_synth.procedural import generate_environments

        specs = generate_environments(gold, seed)
        synth = service_url("synth", synth_url, state_dir)
        envhost = service_url("envhost", envhost_url, state_dir)
        try:
            with ApiClient(synth, token) as client:
                for spec in specs:
                    client.post("/v1/environments", spec.model_dump(mode="json"))
        except ApiError as exc:
            raise _fail(f"registering environments: {exc}") from None
        console.print(f"{len(specs)} environments registered at {synth}; playing them on {envhost}")
        manifest = asyncio.run(
            gold_dataset(specs, envhost_url=envhost, out_dir=out, token=token, name=name)
        )
    stats = manifest.stats
    console.print(
        f"{stats.records} records ({stats.tool_calls_mean:.2f} tool calls each) in {manifest.path}"
    )
    if manifest.rejected:
        console.print(f"dropped: {json.dumps(manifest.rejected, sort_keys=True)}")
    if stats.records == 0:
        raise _fail("no record could be exported")


def _read_trajectories(path: Path) -> list[Trajectory]:
    if not path.is_file():
        raise _fail(f"{path} does not exist")
    records: list[Trajectory] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Trajectory.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _fail(f"{path}:{number}: not a Trajectory ({where}: {first['msg']})") from None
    return records
