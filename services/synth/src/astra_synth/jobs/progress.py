"""Stage-by-stage progress of a running job, written to the database as it moves."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from astra_common.db import Database, ImmutableError
from astra_proto import EnvironmentSpec, StageProgress
from astra_synth.jobs.stats import YieldStats


class JobCancelled(Exception):
    """The job was cancelled (or otherwise finished) by someone else while it ran."""


class JobProgress:
    """Counts per stage and rejections by reason; ``flush`` stores them on the job.

    Writes are throttled to one per ``interval_s`` unless forced, so a fast stage does not
    hammer the database. A flush that finds the job finished (cancelled over the API) raises
    ``JobCancelled``: that is how a running job learns it must stop.
    """

    def __init__(
        self,
        database: Database,
        job_id: str,
        stages: list[str],
        interval_s: float = 0.5,
        *,
        yield_stats: bool = True,
    ) -> None:
        self.database = database
        self.job_id = job_id
        self.interval_s = interval_s
        self.stages = {name: StageProgress(stage=name) for name in stages}
        self.stats = YieldStats()
        self.yield_stats = yield_stats
        self.notes: dict[str, Any] = {}
        """Extra facts for the job's result (malformed input lines, LLM usage)."""
        self._last_flush = 0.0

    def _stage(self, stage: str) -> StageProgress:
        if stage not in self.stages:
            self.stages[stage] = StageProgress(stage=stage)
        return self.stages[stage]

    def set_total(self, stage: str, n: int) -> None:
        """How many items the stage will see."""
        self._stage(stage).total = n

    def advance(self, stage: str, n: int = 1) -> None:
        """``n`` more items passed the stage."""
        self._stage(stage).done += n

    def reject(self, stage: str, reason: str) -> None:
        """One item was rejected at ``stage`` for ``reason`` (a short stable slug)."""
        rejected = self._stage(stage).rejected
        rejected[reason] = rejected.get(reason, 0) + 1

    def registered(self, spec: EnvironmentSpec, *, created: bool, count_stage: bool = True) -> None:
        """One environment reached the registry (``count_stage``: advance the ``registered``
        stage too, unless the source counts it itself)."""
        if count_stage:
            self.advance("registered")
        self.stats.add(spec, created=created)

    def rejected(self) -> dict[str, int]:
        """Rejections by reason over every stage."""
        total: Counter[str] = Counter()
        for stage in self.stages.values():
            total.update(stage.rejected)
        return dict(total)

    def snapshot(self) -> list[StageProgress]:
        """The stages in order."""
        return [stage.model_copy(deep=True) for stage in self.stages.values()]

    def _result(self) -> dict[str, Any]:
        if self.yield_stats:
            return self.stats.as_dict(self.rejected()) | self.notes
        return {"rejected": self.rejected()} | self.notes

    async def flush(self, *, force: bool = False) -> None:
        """Store progress and statistics (at most once per interval unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_flush < self.interval_s:
            return
        self._last_flush = now
        try:
            async with self.database.transaction() as repos:
                await repos.jobs.update(
                    self.job_id,
                    progress=self.snapshot(),
                    result=self._result(),
                )
        except ImmutableError:
            raise JobCancelled(self.job_id) from None
