"""What an environment-synthesis job hands its source, and what a source promises back.

A source turns a job's request into ``EnvironmentSpec``s; the job verifies and registers
them. Sources depend on this module only, never on the job that runs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from astra_common.db import Database
from astra_proto import EnvironmentSpec, Provenance
from astra_proto.api.synth import EnvironmentJobRequest
from astra_synth.jobs.executor import EnvironmentExecutor
from astra_synth.jobs.progress import JobProgress
from astra_synth.settings import SynthSettings


@dataclass
class JobContext:
    """What a running job needs besides its request."""

    job_id: str
    database: Database
    settings: SynthSettings
    executor: EnvironmentExecutor
    progress: JobProgress


class EnvironmentSource(Protocol):
    """A producer of environments for a job request."""

    @property
    def stages(self) -> Sequence[str]:
        """The progress stages a job over this source reports, in order."""
        ...

    def environments(
        self, request: EnvironmentJobRequest, context: JobContext
    ) -> AsyncIterator[EnvironmentSpec]:
        """The specs for ``request``, yielded as each is ready; a spec that carries a
        certificate was verified by the source, any other is verified by the job."""
        ...


def with_job(spec: EnvironmentSpec, job_id: str, default: Provenance) -> EnvironmentSpec:
    """``spec`` with the job that made it in its provenance (``default`` when it has none)."""
    provenance = spec.provenance or default
    return spec.model_copy(update={"provenance": provenance.model_copy(update={"job_id": job_id})})
