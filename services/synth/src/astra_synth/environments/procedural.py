"""The procedural source of a job: deterministic generation by seed, no LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from astra_proto import EnvironmentSpec, Provenance
from astra_proto.api.synth import EnvironmentJobRequest
from astra_synth.environments.source import JobContext, with_job
from astra_synth.procedural import generate_environments

PROCEDURAL_STAGES = ("generated", "verified", "registered")


class ProceduralSource:
    """Environments of ``astra_synth.procedural``; the job certifies each one."""

    @property
    def stages(self) -> Sequence[str]:
        """Generated, verified by the job's replay, registered."""
        return PROCEDURAL_STAGES

    async def environments(
        self, request: EnvironmentJobRequest, context: JobContext
    ) -> AsyncIterator[EnvironmentSpec]:
        """``request.count`` generated specs, stamped with the job's id."""
        context.progress.set_total("generated", request.count)
        specs = await asyncio.to_thread(
            generate_environments,
            request.count,
            request.seed,
            request.domains,
            request.hops,
            request.scenario_types,
            request.split,
        )
        for spec in specs:
            yield with_job(spec, context.job_id, Provenance(source="procedural"))
