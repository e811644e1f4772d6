"""Exported SFT datasets over REST: list, read a manifest, download a file."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse

from astra_synth.trajectories.export import MANIFEST_FILE
from astra_synth.trajectories.models import DatasetManifest
from astra_synth.trajectories.store import NAME_PATTERN, TrajectoryStore

DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, description="The dataset's name.")]


def datasets_router(store: TrajectoryStore) -> APIRouter:
    """Routes of the datasets under the store's data directory."""
    router = APIRouter(prefix="/datasets", tags=["datasets"])

    def manifest(name: str) -> DatasetManifest:
        path = store.dataset_dir(name) / MANIFEST_FILE
        if store.dataset_dir(name).name != name or not path.is_file():
            raise HTTPException(404, detail=f"no dataset {name!r}")
        return DatasetManifest.model_validate_json(path.read_text(encoding="utf-8"))

    @router.get("", summary="Exported datasets")
    async def list_datasets() -> list[DatasetManifest]:
        return store.list_datasets()

    @router.get("/{name}", summary="A dataset's manifest: files with hashes, statistics")
    async def read(name: DatasetName) -> DatasetManifest:
        return manifest(name)

    @router.get("/{name}/files/{file_path:path}", summary="Download one file of a dataset")
    async def download(name: DatasetName, file_path: str) -> FileResponse:
        found = manifest(name)
        if file_path not in found.files:  # only the files the manifest lists, nothing else
            raise HTTPException(
                404,
                detail=f"dataset {name!r} has no file {file_path!r}; it has {sorted(found.files)}",
            )
        return FileResponse(store.dataset_dir(name) / file_path, filename=FilePath(file_path).name)

    return router
