"""Exported SFT datasets over REST: export uploaded records, list, read a manifest, download
a file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse

from astra_proto.api.synth import DatasetManifest, DatasetUpload
from astra_synth.trajectories.export import MANIFEST_FILE, export_dataset
from astra_synth.trajectories.store import NAME_PATTERN, TrajectoryStore

MAX_UPLOAD_BYTES = 200_000_000
"""Largest body ``POST /v1/datasets`` reads (bigger ones are refused with 413)."""

DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, description="The dataset's name.")]


async def limit_upload(request: Request) -> None:
    """Refuse bodies above ``MAX_UPLOAD_BYTES`` with 413 before reading them."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        raise HTTPException(
            413, detail=f"request body of {int(length)} bytes exceeds {MAX_UPLOAD_BYTES} bytes"
        )


def datasets_router(store: TrajectoryStore, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes of the datasets under the store's data directory."""
    router = APIRouter(prefix="/datasets", tags=["datasets"])

    @router.post(
        "",
        status_code=201,
        dependencies=[Depends(auth), Depends(limit_upload)],
        summary="Export uploaded Trajectory records as a dataset (replacing one of that name)",
    )
    async def upload(body: DatasetUpload) -> DatasetManifest:
        """Write the records as they are (JSONL + Parquet + dataset card); 422 for a record
        that cannot be a training sample (no final answer) or a repeated id."""
        try:
            return await asyncio.to_thread(
                export_dataset, body.records, store.dataset_dir(body.name), name=body.name
            )
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None

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
