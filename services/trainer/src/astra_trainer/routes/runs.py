"""REST routes of the trainer: start SFT runs, start/stop GRPO consumers, run status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import ValidationError

from astra_common.service import bearer_auth
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.run_files import RunStatus, read_metrics
from astra_trainer.runs import RunLimitError, RunManager, RunNotFoundError
from astra_trainer.settings import TrainerSettings
from astra_trainer.sft import SFTRunConfig
from astra_trainer.sft_data import DatasetFormatError, dataset_files


def _validated(model: Any, values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise HTTPException(
            422, detail=exc.errors(include_url=False, include_context=False, include_input=False)
        ) from exc


_TOO_MANY_RUNS: dict[str, Any] = {
    "description": "max_concurrent_runs runs are running; the detail names them",
}


def _start(runs: RunManager, run_id: str, kind: Literal["sft", "grpo"], config: Any) -> RunStatus:
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
        body: dict[str, Any] = Body(  # noqa: B008
            ..., examples=[{"dataset": "/data/sft-dataset", "max_steps": 100}]
        ),
    ) -> RunStatus:
        """Body: ``SFTRunConfig`` fields except ``run_dir`` (``dataset`` required)."""
        if "run_dir" in body:
            raise HTTPException(422, detail="run_dir is chosen by the service")
        run_id, run_dir = runs.new_run_dir("sft")
        config = _validated(SFTRunConfig, {**body, "run_dir": run_dir})
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
        body: dict[str, Any] = Body(default_factory=dict, examples=[{"group_size": 8}]),  # noqa: B008
    ) -> RunStatus:
        """Body: ``GRPOConfig`` fields except ``run_dir``; Redis, policy server and
        ``num_processes`` default to the service's settings."""
        if "run_dir" in body:
            raise HTTPException(422, detail="run_dir is chosen by the service")
        run_id, run_dir = runs.new_run_dir("grpo")
        values = {
            "redis_url": settings.redis_url,
            "policy_server_url": settings.policy_base_url,
            "num_processes": settings.grpo_num_processes,
            **body,
            "run_dir": run_dir,
        }
        return _start(runs, run_id, "grpo", _validated(GRPOConfig, values))

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
