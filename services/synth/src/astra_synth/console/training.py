"""Training metrics for the web console, read from the trainer service and passed through.

The trainer serves ``GET /v1/runs`` (its runs) and ``GET /v1/runs/{run_id}/metrics`` (its
metrics log: one JSON object per optimizer step, with ``step``, ``loss``, ``reward_mean``,
``reward_std``, ``batch_fill_ratio``, ``policy_version``, ..., among other events). Synth
relays them, so the console needs one origin, keeping only the steps' scalar fields; when the
trainer cannot be reached or answers something else, the answer is 502 with the reason.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, HTTPException

from astra_proto.api.synth import TrainingMetrics, TrainingRuns

TRAINER_TIMEOUT_S = 5.0


def training_router(trainer_url: str) -> APIRouter:
    """Routes ``/training/runs`` and ``/training/metrics`` (mounted under ``/v1``)."""
    router = APIRouter(prefix="/training", tags=["console"])
    base = trainer_url.rstrip("/")

    @router.get("/runs", summary="The trainer's runs (relayed from the trainer)")
    async def runs() -> TrainingRuns:
        return TrainingRuns(trainer_url=base, runs=await _relay_runs(base))

    @router.get("/metrics", summary="A run's metrics per step (the latest run when none given)")
    async def metrics(run_id: str | None = None) -> TrainingMetrics:
        if run_id is None:
            listed = await _relay_runs(base)
            if not listed:
                raise HTTPException(404, detail=f"the trainer at {base} has no runs yet")
            run_id = latest_run_id(listed)
        document = await _relay(
            base, f"/v1/runs/{quote(run_id, safe='')}/metrics", missing=f"run {run_id!r}"
        )
        records = _records(document, ("metrics", "steps", "items"), what="metrics")
        return TrainingMetrics(trainer_url=base, run_id=run_id, steps=step_records(records))

    return router


def latest_run_id(runs: list[dict[str, Any]]) -> str:
    """The id of the most recently updated run (the last listed when none says when)."""
    dated = [run for run in runs if isinstance(run.get("updated_at"), str)]
    chosen = max(dated, key=lambda run: str(run["updated_at"])) if dated else runs[-1]
    return run_id_of(chosen)


def step_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of optimizer steps (those with a numeric ``step``), in step order, each cut
    to its scalar fields: other events of the log are left out, and so are bulky lists (the
    record ids a step trained on), which a chart does not need."""
    steps = [
        {key: value for key, value in record.items() if _scalar(value)}
        for record in records
        if isinstance(record.get("step"), int | float) and not isinstance(record["step"], bool)
    ]
    steps.sort(key=lambda record: float(record["step"]))
    return steps


def run_id_of(run: dict[str, Any]) -> str:
    """A run's id (``run_id``, or ``id``); 502 when it has neither."""
    for key in ("run_id", "id"):
        if isinstance(run.get(key), str) and run[key]:
            return str(run[key])
    raise _bad_gateway(f"the trainer listed a run without an id: {str(run)[:200]}")


async def _relay_runs(base: str) -> list[dict[str, Any]]:
    runs = _records(await _relay(base, "/v1/runs", missing="runs"), ("runs", "items"), "runs")
    for run in runs:
        run_id_of(run)  # every run must carry an id
    return runs


async def _relay(base: str, path: str, *, missing: str) -> Any:
    """The trainer's JSON document at ``path``: 404 passed on, anything else unusable is 502."""
    url = f"{base}{path}"
    try:
        async with httpx.AsyncClient(timeout=TRAINER_TIMEOUT_S) as http:
            response = await http.get(url)
    except httpx.HTTPError as exc:
        raise _bad_gateway(
            f"trainer unreachable at {base}: {type(exc).__name__}: {exc or 'no answer'}"
        ) from None
    if response.status_code == 404:
        raise HTTPException(404, detail=f"the trainer at {base} knows no {missing}")
    if response.status_code != 200:
        raise _bad_gateway(
            f"the trainer at {base} answered {response.status_code} for {path}: "
            f"{response.text[:300]}"
        )
    try:
        return response.json()
    except ValueError:
        raise _bad_gateway(f"the trainer at {base} answered {path} with non-JSON") from None


def _records(document: Any, keys: tuple[str, ...], what: str) -> list[dict[str, Any]]:
    """A list of JSON objects: the document itself, or the list under one of ``keys``."""
    if isinstance(document, dict):
        document = next((document[key] for key in keys if key in document), document)
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise _bad_gateway(f"the trainer's {what} are not a list of JSON objects")
    return list(document)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _bad_gateway(message: str) -> HTTPException:
    return HTTPException(502, detail=message)
