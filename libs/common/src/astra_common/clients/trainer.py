"""The trainer client: start, follow and stop training runs; read the current policy.

```python
async with TrainerClient("http://127.0.0.1:8103", token=token) as trainer:
    run = await trainer.start_sft(SFTRunRequest(dataset=Path("/data/gold"), max_steps=100))
    run = await trainer.run_status(run.run_id)
```
"""

from __future__ import annotations

from typing import Any

from astra_common.clients.base import ServiceClient, ServiceError
from astra_proto import PolicyPointer
from astra_proto.api.trainer import GRPORunRequest, RunStatus, SFTRunRequest


class TrainerClient(ServiceClient):
    """Typed client of the trainer's REST API (``/v1/runs``, ``/v1/policy``)."""

    service = "trainer"

    async def start_sft(self, request: SFTRunRequest) -> RunStatus:
        """``POST /v1/runs/sft``: start an SFT run (400 for a dataset it cannot read, 429 when
        as many runs as allowed are running); its status, ``pending``."""
        return await self.post("/v1/runs/sft", RunStatus, request, expect=(202,))

    async def start_grpo(self, request: GRPORunRequest) -> RunStatus:
        """``POST /v1/runs/grpo``: start a GRPO consumer (429 when as many runs as allowed are
        running); its status, ``pending``."""
        return await self.post("/v1/runs/grpo", RunStatus, request, expect=(202,))

    async def list_runs(self) -> list[RunStatus]:
        """``GET /v1/runs``: every run, oldest first."""
        return await self.get("/v1/runs", list[RunStatus])

    async def run_status(self, run_id: str) -> RunStatus:
        """``GET /v1/runs/{id}``: one run's status (404: no such run)."""
        return await self.get(f"/v1/runs/{run_id}", RunStatus)

    async def run_metrics(self, run_id: str, *, tail: int | None = None) -> list[dict[str, Any]]:
        """``GET /v1/runs/{id}/metrics``: the run's metrics records as logged, oldest first
        (flat JSON objects: ``time``, ``event``, ``step``, ``loss``, ...); ``tail``: only the
        last that many."""
        return await self.get(
            f"/v1/runs/{run_id}/metrics", list[dict[str, Any]], params={"tail": tail}
        )

    async def stop_run(self, run_id: str) -> RunStatus:
        """``POST /v1/runs/{id}/stop``: ask the run to stop (SIGTERM); its status."""
        return await self.post(f"/v1/runs/{run_id}/stop", RunStatus, expect=(200,))

    async def current_policy(self) -> PolicyPointer | None:
        """``GET /v1/policy``: the current policy version and checkpoint; None before any
        policy was published."""
        try:
            return await self.get("/v1/policy", PolicyPointer)
        except ServiceError as error:
            if error.status == 404:
                return None
            raise
