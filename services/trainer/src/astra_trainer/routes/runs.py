"""REST routes of the trainer: start SFT runs, start/stop GRPO consumers, run status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from astra_common.service import bearer_auth
from astra_proto.api.trainer import GRPORunRequest, RunKind, RunStatus, SFTRunRequest
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.run_files import read_metrics
from astra_trainer.runs import RunLimitError, RunManager, RunNotFoundError
from astra_trainer.settings import TrainerSettings
from astra_trainer.sft import SFTRunConfig
from astra_trainer.sft_data import DatasetFormatError, dataset_files

_TOO_MANY_RUNS: dict[str, Any] = {
    "description": "max_concurrent_runs runs are running; the detail names them",
}


def _start(
    runs: RunManager, run_id: str, kind: RunKind, config: SFTRunConfig | GRPOConfig
) -> RunStatus:
    try:
        return runs.start(run_id, kind, config)
    except RunLimitError as exc:
        raise HTTPException(429, detail=str(exc)) from exc


def runs_router(settings: TrainerSettings, runs: RunManager) -> APIRouter:
    """``/runs`` routes; writes need the bearer token when one is configured."""
    router = APIRouter(tags=["runs"])
    write = [Depends(bearer_auth(settings))]

    @router.post(
        "/runs/sft",
        status_code=202,
        dependencies=write,
        summary="Start an SFT run",
        responses={429: _TOO_MANY_RUNS},
    )
    async def start_sft(
        body: Annotated[
            SFTRunRequest,
            Body(examples=[{"dataset": "/data/sft-dataset", "max_steps": 100}]),
        ],
    ) -> RunStatus:
        """Body: the run's knobs (``dataset`` required); the service chooses ``run_dir``."""
        run_id, run_dir = runs.new_run_dir("sft")
        config = SFTRunConfig.model_validate({**body.model_dump(), "run_dir": run_dir})
        try:
            dataset_files(Path(config.dataset))
        except DatasetFormatError as exc:
            raise HTTPException(400, detail=str(exc)) from exc
        return _start(runs, run_id, "sft", config)

    @router.post(
        "/runs/grpo",
        status_code=202,
        dependencies=write,
        summary="Start a GRPO consumer",
        responses={429: _TOO_MANY_RUNS},
    )
    async def start_grpo(
        body: Annotated[
            GRPORunRequest,
            Body(default_factory=GRPORunRequest, examples=[{"group_size": 8}]),
        ],
    ) -> RunStatus:
        """Body: the run's knobs; the service chooses ``run_dir``, and Redis, the policy
        server and ``num_processes`` left out (or null) are the service's settings."""
        run_id, run_dir = runs.new_run_dir("grpo")
        chosen = {
            "redis_url": settings.redis_url if body.redis_url is None else body.redis_url,
            "policy_server_url": (
                settings.policy_base_url
                if body.policy_server_url is None
                else body.policy_server_url
            ),
            "num_processes": (
                settings.grpo_num_processes if body.num_processes is None else body.num_processes
            ),
            "run_dir": run_dir,
        }
        config = GRPOConfig.model_validate({**body.model_dump(), **chosen})
        return _start(runs, run_id, "grpo", config)

    @router.get("/runs", summary="Every run")
    async def list_runs() -> list[RunStatus]:
        return runs.list()

    @router.get("/runs/{run_id}", summary="One run's status")
    async def run_status(run_id: str) -> RunStatus:
        try:
            return runs.status(run_id)
        except RunNotFoundError:
            raise HTTPException(404, detail=f"no run {run_id!r}") from None

    @router.get("/runs/{run_id}/metrics", summary="A run's metrics, one record per event")
    async def run_metrics(
        run_id: str,
        tail: Annotated[
            int | None, Query(ge=1, le=100_000, description="Only the last N records.")
        ] = None,
    ) -> list[dict[str, Any]]:
        try:
            runs.status(run_id)
        except RunNotFoundError:
            raise HTTPException(404, detail=f"no run {run_id!r}") from None
        records = read_metrics(runs.root / run_id)
        return records[-tail:] if tail else records

    @router.post("/runs/{run_id}/stop", dependencies=write, summary="Stop a run (SIGTERM)")
    async def stop_run(run_id: str) -> RunStatus:
        try:
            return runs.stop(run_id)
        except RunNotFoundError:
            raise HTTPException(404, detail=f"no run {run_id!r}") from None

    return router
