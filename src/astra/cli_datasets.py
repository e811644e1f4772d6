"""``astra datasets``: export SFT datasets (JSONL + Parquet + card) for TRL.

synth builds every dataset (``POST /v1/datasets`` from uploaded records, a dataset job for
gold trajectories); the command downloads the files it lists into the folder asked for.
Mounted by the main CLI as ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from astra.cli_support import fail as _fail
from astra.cli_support import service_url, with_client
from astra.cli_synth import invalid, start_job
from astra_common.clients.synth import SynthClient
from astra_proto import Trajectory
from astra_proto.api.synth import (
    DATASET_NAME_PATTERN,
    DatasetJobRequest,
    DatasetManifest,
    DatasetUpload,
    EnvironmentJobRequest,
)

datasets_app = typer.Typer(help="Export SFT datasets.", no_args_is_help=True)
console = Console(soft_wrap=True)

Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]

DATASET_NAME = re.compile(DATASET_NAME_PATTERN)
"""The names synth gives datasets."""
MANIFEST_FILE = "manifest.json"


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
            "the stack's envhost (no LLM)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the procedural environments.")] = 0,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: folder name).")] = None,
    synth_url: Annotated[str | None, typer.Option("--synth-url", help="synth API.")] = None,
    token: Token = None,
    state_dir: StateDir = Path(".astra"),
) -> None:
    """Write a dataset that `datasets.load_dataset(OUT)` reads and TRL's SFTTrainer trains on.

    synth exports it (under its data directory, by this name, replacing a dataset of that
    name) and the files are downloaded into OUT."""
    if (trajectories is None) == (gold is None):
        raise _fail("give exactly one of --trajectories FILE or --gold N")
    if gold is not None and gold < 1:
        raise _fail("--gold must be at least 1")
    dataset = name or out.resolve().name
    if not DATASET_NAME.fullmatch(dataset):
        raise _fail(
            f"{dataset!r} cannot name a dataset (letters, digits, '_', '.', '-'): give --name"
        )
    upload = None
    if trajectories is not None:
        upload = DatasetUpload(name=dataset, records=_read_trajectories(trajectories))
    url = service_url("synth", synth_url, state_dir)
    folder = out.resolve()
    if upload is None:
        assert gold is not None
        _build_gold(dataset, gold, seed, url, token, state_dir)

    async def work(synth: SynthClient) -> DatasetManifest:
        if upload is not None:
            await synth.upload_dataset(upload)
        return await download_dataset(synth, dataset, folder)

    manifest = with_client(SynthClient, url, state_dir, work, token=token, timeout_s=300)
    write_manifest(manifest)
    stats = manifest.stats
    console.print(
        f"{stats.records} records ({stats.tool_calls_mean:.2f} tool calls each) in {manifest.path}"
    )
    if manifest.rejected:
        console.print(f"dropped: {json.dumps(manifest.rejected, sort_keys=True)}")
    if stats.records == 0:
        raise _fail("no record could be exported")


def _build_gold(
    dataset: str, count: int, seed: int, url: str, token: str | None, state_dir: Path
) -> None:
    """Two synth jobs: ``count`` procedural environments, then their gold trajectories
    played on synth's envhost and exported as ``dataset``."""
    try:
        environments = EnvironmentJobRequest(source="procedural", count=count, seed=seed)
    except ValidationError as exc:
        raise invalid(exc) from None
    envs = start_job(
        environments, wait=True, synth_url=url, token=token, state_dir=state_dir,
        summary=lambda job: console.print(
            f"{job.result.get('registered', 0)} environments registered at {url}"
        ),
    )  # fmt: skip
    start_job(
        DatasetJobRequest(name=dataset, job_id=envs.id, limit=count),
        wait=True, synth_url=url, token=token, state_dir=state_dir,
        summary=lambda job: console.print(f"job {job.id}: {job.state}"),
    )  # fmt: skip


async def download_dataset(synth: SynthClient, name: str, folder: Path) -> DatasetManifest:
    """Download every file of synth's dataset ``name`` into ``folder`` (checking each one's
    SHA-256 against the manifest); the manifest, its path now ``folder``."""
    manifest = await synth.get_dataset(name)
    for relative, digest in sorted(manifest.files.items()):
        await synth.download_dataset_file(name, relative, folder / relative, sha256=digest)
    return manifest.model_copy(update={"path": str(folder)})


def write_manifest(manifest: DatasetManifest) -> None:
    """Write ``manifest`` into its dataset folder (``manifest.path``)."""
    folder = Path(manifest.path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")


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
    if not records:
        raise _fail(f"{path} holds no records")
    return records
