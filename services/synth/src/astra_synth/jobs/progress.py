"""Stage-by-stage progress of a running job, written to the database as it moves."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from astra_common.db import Database, ImmutableError
from astra_common.db.repositories import utc_now
from astra_common.retry import DEFAULT_GIVE_UP_AFTER_S, retry_transient
from astra_proto import EnvironmentSpec, JobRejection, StageProgress
from astra_proto.jobs import MAX_REJECTION_EXCERPT, MAX_REJECTION_TEXT
from astra_synth.jobs.stats import YieldStats

log = logging.getLogger(__name__)

MAX_STORED_REJECTIONS = 1000
"""Rejection records kept per job run; past this only the counters grow."""


class JobCancelled(Exception):
    """The job was cancelled (or otherwise finished) by someone else while it ran."""


class JobProgress:
    """Counts per stage and rejections by reason; ``flush`` stores them on the job.

    Writes are throttled to one per ``interval_s`` unless forced, so a fast stage does not
    hammer the database. A flush that finds the job finished (cancelled over the API) raises
    ``JobCancelled``: that is how a running job learns it must stop. Rejections given with
    details are logged and stored as records of the job (``GET /v1/jobs/{id}/rejections``).
    ``attempt``: the run writing (a run superseded by a later one is stopped the same way);
    ``retry_s``: how long a write is retried while the database is unreachable.
    """

    def __init__(
        self,
        database: Database,
        job_id: str,
        stages: list[str],
        interval_s: float = 0.5,
        *,
        yield_stats: bool = True,
        attempt: int | None = None,
        retry_s: float = DEFAULT_GIVE_UP_AFTER_S,
    ) -> None:
        self.database = database
        self.attempt = attempt
        self.retry_s = retry_s
        self._pending: list[JobRejection] = []
        self._stored_rejections = 0
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

    def reject(
        self,
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        """One item was rejected at ``stage`` for ``reason`` (a short stable slug): counted,
        logged, and kept as a record with ``item`` (which one), ``message`` (why) and
        ``excerpt`` (the start of the rejected reply), each cut to a bounded size."""
        rejected = self._stage(stage).rejected
        rejected[reason] = rejected.get(reason, 0) + 1
        self.record(stage, reason, item=item, message=message, excerpt=excerpt)

    def record(
        self,
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        """Log and keep the record of one rejection without counting it (for stages whose
        counts come whole from their own code, see ``RunningJob.report``)."""
        log.info(
            "job %s rejected %s at %s: %s%s",
            self.job_id,
            item or "an item",
            stage,
            reason,
            f" ({message})" if message else "",
        )
        if self._stored_rejections + len(self._pending) >= MAX_STORED_REJECTIONS:
            return
        self._pending.append(
            JobRejection(
                stage=stage,
                reason=reason,
                item=_cut(item, MAX_REJECTION_TEXT),
                message=_cut(message, MAX_REJECTION_TEXT),
                excerpt=_cut(excerpt, MAX_REJECTION_EXCERPT),
                at=utc_now(),
            )
        )

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
        pending = list(self._pending)
        progress, result = self.snapshot(), self._result()

        async def write() -> None:
            async with self.database.transaction() as repos:
                await repos.jobs.update(
                    self.job_id, progress=progress, result=result, attempt=self.attempt
                )
                await repos.jobs.add_rejections(self.job_id, pending)

        try:
            await retry_transient(
                write, what=f"store progress of job {self.job_id}", give_up_after_s=self.retry_s
            )
        except ImmutableError:
            raise JobCancelled(self.job_id) from None
        del self._pending[: len(pending)]
        self._stored_rejections += len(pending)


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
