"""The BFCL source of a job: BFCL v3 multi-turn entries, as the envhost that serves them
builds their specs (``GET /v1/bfcl/environments``).

BFCL environments are builtin: envhost runs them on BFCL's own executable backends and
scores them with BFCL's checker, so there is no synthesized code to replay; the job
registers them as they come.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from astra_proto import EnvironmentSpec, Provenance
from astra_proto.api.synth import BfclSelection, EnvironmentJobRequest
from astra_synth.environments.source import JobContext, with_job

BFCL_STAGES = ("fetched", "registered")


class BfclSource:
    """BFCL entries fetched from envhost; registered without a replay (see the module)."""

    @property
    def stages(self) -> Sequence[str]:
        """Fetched from envhost, registered."""
        return BFCL_STAGES

    async def environments(
        self, request: EnvironmentJobRequest, context: JobContext
    ) -> AsyncIterator[EnvironmentSpec]:
        """The selected entries' specs, stamped with the job's id."""
        selection = request.bfcl or BfclSelection()
        specs = await context.executor.bfcl_environments(
            selection.categories, selection.limit, selection.entries
        )
        context.progress.set_total("fetched", len(specs))
        context.progress.set_total("registered", len(specs))
        for spec in specs:
            context.progress.advance("fetched")
            yield with_job(spec, context.job_id, Provenance(source="bfcl"))
