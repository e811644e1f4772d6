"""The rollout service's typed client: batches, evaluations and teacher runs.

```python
async with RolloutClient("http://127.0.0.1:8102", token=token) as rollout:
    batch = await rollout.start_batch(BatchRequest(env_ids=["env_..."], group_size=4))
    batch = await rollout.batch_status(batch.id)
```
"""

from __future__ import annotations

from urllib.parse import quote

from astra_common.clients.base import ServiceClient
from astra_proto.api.rollout import (
    BatchRequest,
    BatchStatus,
    EvaluationRequest,
    EvaluationStatus,
    TeacherRunRequest,
    TeacherRunStatus,
    TrajectoryPage,
)
from astra_proto.trajectory import Trajectory

CREATED = (201,)


def _segment(value: str) -> str:
    """A run id as one path segment."""
    return quote(value, safe="")


class RolloutClient(ServiceClient):
    """Client of the rollout API (``/v1/batches``, ``/v1/evaluations``, ``/v1/teacher-runs``)."""

    service = "rollout"

    # --- batches ----------------------------------------------------------------------------

    async def start_batch(self, request: BatchRequest) -> BatchStatus:
        """Start a batch of group rollouts (``POST /v1/batches``)."""
        return await self.post("/v1/batches", BatchStatus, request, expect=CREATED)

    async def list_batches(self) -> list[BatchStatus]:
        """Batches within the retention, oldest first."""
        return await self.get("/v1/batches", list[BatchStatus])

    async def batch_status(self, batch_id: str) -> BatchStatus:
        """Progress and summary of a batch (404: ``ServiceError`` with status 404)."""
        return await self.get(f"/v1/batches/{_segment(batch_id)}", BatchStatus)

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        """Cancel a running batch (409 when it has already ended)."""
        return await self.post(f"/v1/batches/{_segment(batch_id)}/cancel", BatchStatus)

    # --- evaluations ------------------------------------------------------------------------

    async def start_evaluation(self, request: EvaluationRequest) -> EvaluationStatus:
        """Start an evaluation suite (``POST /v1/evaluations``)."""
        return await self.post("/v1/evaluations", EvaluationStatus, request, expect=CREATED)

    async def list_evaluations(self) -> list[EvaluationStatus]:
        """Evaluations within the retention, without their per-entry rows."""
        return await self.get("/v1/evaluations", list[EvaluationStatus])

    async def evaluation_status(self, evaluation_id: str) -> EvaluationStatus:
        """Progress and scores of an evaluation, per category and per entry."""
        return await self.get(f"/v1/evaluations/{_segment(evaluation_id)}", EvaluationStatus)

    async def evaluation_trajectory(self, evaluation_id: str, trajectory_id: str) -> Trajectory:
        """One evaluated trajectory."""
        path = f"/v1/evaluations/{_segment(evaluation_id)}/trajectories/{_segment(trajectory_id)}"
        return await self.get(path, Trajectory)

    async def cancel_evaluation(self, evaluation_id: str) -> EvaluationStatus:
        """Cancel a running evaluation; finished entries keep their scores."""
        path = f"/v1/evaluations/{_segment(evaluation_id)}/cancel"
        return await self.post(path, EvaluationStatus)

    # --- teacher runs -----------------------------------------------------------------------

    async def start_teacher_run(self, request: TeacherRunRequest) -> TeacherRunStatus:
        """Have a teacher model play tasks (``POST /v1/teacher-runs``)."""
        return await self.post("/v1/teacher-runs", TeacherRunStatus, request, expect=CREATED)

    async def list_teacher_runs(self) -> list[TeacherRunStatus]:
        """Teacher runs within the retention, oldest first."""
        return await self.get("/v1/teacher-runs", list[TeacherRunStatus])

    async def teacher_run_status(self, run_id: str) -> TeacherRunStatus:
        """Progress of a teacher run."""
        return await self.get(f"/v1/teacher-runs/{_segment(run_id)}", TeacherRunStatus)

    async def teacher_run_trajectories(
        self, run_id: str, *, offset: int = 0, limit: int = 50
    ) -> TrajectoryPage:
        """One page of a run's finished trajectories, in finishing order (``limit`` ≤ 200)."""
        return await self.get(
            f"/v1/teacher-runs/{_segment(run_id)}/trajectories",
            TrajectoryPage,
            params={"offset": offset, "limit": limit},
        )

    async def cancel_teacher_run(self, run_id: str) -> TeacherRunStatus:
        """Cancel a running teacher run."""
        return await self.post(f"/v1/teacher-runs/{_segment(run_id)}/cancel", TeacherRunStatus)
