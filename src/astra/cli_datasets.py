"""``astra datasets``: export SFT datasets (JSONL + Parquet + card) for TRL.

synth builds every dataset (``POST /v1/datasets`` from uploaded records, a dataset job for
gold trajectories); the command downloads the files it lists into the folder asked for.
Mounted by the main CLI as ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from astra.api_client import ApiClient, ApiError, service_url
from astra.cli_support import fail as _fail
from astra.cli_synth import start_job
from astra_proto import Trajectory

datasets_app = typer.Typer(help="Export SFT datasets.", no_args_is_help=True)
console = Console(soft_wrap=True)

Token = Annotated[str | None, typer.Option("--token", envvar="ASTRA_API_TOKEN", help="API token.")]
StateDir = Annotated[Path, typer.Option("--state-dir", envvar="ASTRA_HOME", hidden=True)]

DATASET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
"""The names synth gives datasets (its ``DATASET_NAME_PATTERN``)."""
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
    records = _read_trajectories(trajectories) if trajectories is not None else None
    url = service_url("synth", synth_url, state_dir)
    if records is None:
        assert gold is not None
        _build_gold(dataset, gold, seed, url, token, state_dir)
    try:
        with ApiClient(url, token, timeout=300) as client:
            if records is not None:
                body = {
                    "name": dataset,
                    "records": [record.model_dump(mode="json") for record in records],
                }
                client.post("/v1/datasets", body)
            manifest = download_dataset(client, dataset, out)
    except ApiError as exc:
        raise _fail(str(exc)) from None
    stats = manifest["stats"]
    console.print(
        f"{stats['records']} records ({stats['tool_calls_mean']:.2f} tool calls each) in "
        f"{manifest['path']}"
    )
    if manifest.get("rejected"):
        console.print(f"dropped: {json.dumps(manifest['rejected'], sort_keys=True)}")
    if stats["records"] == 0:
        raise _fail("no record could be exported")


def _build_gold(
    dataset: str, count: int, seed: int, url: str, token: str | None, state_dir: Path
) -> None:
    """Two synth jobs: ``count`` procedural environments, then their gold trajectories
    played on synth's envhost and exported as ``dataset``."""
    envs = start_job(
        "/v1/jobs/environments", {"source": "procedural", "count": count, "seed": seed},
        wait=True, synth_url=url, token=token, state_dir=state_dir,
        summary=lambda job: console.print(
            f"{(job.get('result') or {}).get('registered', 0)} environments registered at {url}"
        ),
    )  # fmt: skip
    body = {"name": dataset, "job_id": envs["id"], "limit": count}
    start_job(
        "/v1/jobs/datasets", body, wait=True, synth_url=url, token=token, state_dir=state_dir,
        summary=lambda job: console.print(f"job {job['id']}: {job['state']}"),
    )  # fmt: skip


def download_dataset(client: ApiClient, name: str, out: Path) -> dict[str, Any]:
    """Download every file of synth's dataset ``name`` into ``out`` (checking each one's
    SHA-256 against the manifest) and write the manifest there, its path now ``out``."""
    manifest: dict[str, Any] = client.get(f"/v1/datasets/{name}")
    folder = out.resolve()
    for relative, digest in sorted(manifest["files"].items()):
        content = client.request("GET", f"/v1/datasets/{name}/files/{relative}").content
        if hashlib.sha256(content).hexdigest() != digest:
            raise ApiError(f"{relative} of dataset {name!r} arrived with another SHA-256")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    manifest["path"] = str(folder)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


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
