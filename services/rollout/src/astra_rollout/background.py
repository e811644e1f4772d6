"""Runs of work in the rollout process: each has a status model, one asyncio task, and the
trajectories it kept; finished runs are forgotten oldest first beyond a bound.

Evaluations and teacher runs are kept here (batches publish to the stream instead). The state is
in process memory: a restarted service forgets its runs. Every episode of a run is bounded by a
hard deadline (``within_deadline``), so a run always ends, even when a tool server or the policy
stops answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from astra_proto import JobState, Trajectory

Status = TypeVar("Status", bound="RunStatus")


def hard_deadline_s(timeout_s: float) -> float:
    """How long one episode may take in all: its time limit (which bounds the conversation)
    plus slack for the steps outside it (opening the episode and its tool session, scoring,
    closing): half the limit, at least 10 s, at most 120 s."""
    return timeout_s + min(120.0, max(10.0, timeout_s / 2))


async def within_deadline(
    episode: Awaitable[Trajectory], deadline_s: float, fail: Callable[[str], Trajectory]
) -> Trajectory:
    """The episode's trajectory, or ``fail(reason)`` when it has not ended after
    ``deadline_s`` (it is cancelled)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await episode
    except TimeoutError:
        return fail(
            f"episode exceeded its hard deadline of {deadline_s:.0f} s (a tool server or the "
            "policy stopped answering)"
        )


class RunStatus(BaseModel):
    """The fields every run's status has."""

    id: str
    state: JobState
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


@dataclass
class Run(Generic[Status]):
    """One run: its live status, its task and its trajectories (by id, in finishing order)."""

    status: Status
    trajectories: dict[str, Trajectory] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class RunTable(Generic[Status]):
    """Starts runs as tasks, sets their final state, reads, waits, cancels, forgets."""

    def __init__(self, keep: int = 100) -> None:
        self._keep = keep
        self._runs: dict[str, Run[Status]] = {}

    def start(self, status: Status, work: Callable[[Run[Status]], Awaitable[None]]) -> Run[Status]:
        """Record a run with ``status`` and run ``work`` on it as a task: it ends SUCCEEDED when
        the work returns, CANCELLED when cancelled, FAILED (with the error) when it raises."""
        run = Run(status=status)
        self._runs[status.id] = run
        self._forget_old()

        async def main() -> None:
            try:
                await work(run)
                run.status.state = JobState.SUCCEEDED
            except asyncio.CancelledError:
                run.status.state = JobState.CANCELLED
            except Exception as exc:
                run.status.error = f"{type(exc).__name__}: {exc}"
                run.status.state = JobState.FAILED
            finally:
                run.status.finished_at = datetime.now(UTC)

        run.task = asyncio.create_task(main(), name=status.id)
        return run

    def get(self, run_id: str) -> Run[Status]:
        """The run; ``KeyError`` when this process does not know it."""
        return self._runs[run_id]

    def status(self, run_id: str) -> Status:
        """A copy of the run's status; ``KeyError`` when unknown."""
        return self._runs[run_id].status.model_copy(deep=True)

    def runs(self) -> list[Run[Status]]:
        """Every run kept, oldest first."""
        return list(self._runs.values())

    async def wait(self, run_id: str) -> Status:
        """Wait for the run to end; returns its final status."""
        task = self._runs[run_id].task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        return self.status(run_id)

    async def cancel(self, run_id: str) -> Status:
        """Stop the run (a finished one is returned unchanged)."""
        task = self._runs[run_id].task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return self.status(run_id)

    async def aclose(self) -> None:
        """Cancel every running run."""
        for run_id in list(self._runs):
            await self.cancel(run_id)

    def _forget_old(self) -> None:
        finished = [r for r in self._runs.values() if r.status.state.terminal]
        for run in finished[: max(0, len(finished) - self._keep)]:
            del self._runs[run.status.id]
