"""Run one environment-synthesis job: produce, verify through envhost, register as they pass.

Every stage is idempotent, so a job re-delivered after a worker crash (Celery late acks) runs
again from the start and ends in the same registry: generation is deterministic by seed,
registration is keyed by content hash, and progress is rebuilt from zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from astra_common.db.repositories import Registration
from astra_common.retry import retry_transient
from astra_proto import EnvironmentSpec, JobState, SynthesisJob
from astra_proto.api.synth import EnvironmentJobRequest
from astra_synth.environments.bfcl import BfclSource
from astra_synth.environments.procedural import ProceduralSource
from astra_synth.environments.source import EnvironmentSource, JobContext
from astra_synth.jobs.executor import EnvironmentExecutor
from astra_synth.jobs.lifecycle import RunningJob, run_job
from astra_synth.procedural import attach_certificate, certificate_from_outcomes, reference_calls
from astra_synth.settings import SynthSettings


def source_for(request: EnvironmentJobRequest) -> EnvironmentSource:
    """The source that serves ``request``: procedural, BFCL, or the LLM pipeline."""
    source = request.resolved_source()
    if source == "procedural":
        return ProceduralSource()
    if source == "bfcl":
        return BfclSource()
    from astra_synth.environments.llm import LlmSource  # the heavier path, imported when used

    return LlmSource()


ExecutorFactory = Callable[[SynthSettings], EnvironmentExecutor]


async def run_environment_job(
    job_id: str,
    settings: SynthSettings,
    *,
    executor_factory: ExecutorFactory | None = None,
    sources: Callable[[EnvironmentJobRequest], EnvironmentSource] = source_for,
) -> JobState:
    """Run the job to a terminal state and return it; a job that is already terminal (done,
    or cancelled before a worker picked it up) is left as it is. ``sources`` picks the source
    of a request's environments."""
    factory = executor_factory or EnvironmentExecutor.from_settings

    def stages(job: SynthesisJob) -> list[str]:
        return list(sources(EnvironmentJobRequest.model_validate(job.params)).stages)

    async def body(job: RunningJob) -> None:
        request = EnvironmentJobRequest.model_validate(job.job.params)
        source = sources(request)
        async with factory(settings) as executor:
            context = JobContext(job_id, job.database, settings, executor, job.progress)
            specs = source.environments(request, context)
            await _verify_and_register(context, specs, request.concurrency)

    return await run_job(job_id, settings, stages, body, yield_stats=True)


async def _verify_and_register(
    context: JobContext, specs: AsyncIterator[EnvironmentSpec], concurrency: int
) -> None:
    """Certify each spec by replaying its reference calls through envhost (unless its source
    certified it already, or it is builtin: envhost's own backend, nothing synthesized to
    replay), and register the ones that pass, ``concurrency`` at a time."""
    progress = context.progress
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def register(spec: EnvironmentSpec, *, count_stage: bool) -> None:
        async def store() -> Registration:
            async with context.database.transaction() as repos:
                registration = await repos.environments.register(spec)
                await repos.environments.link_job(context.job_id, spec.id)
            return registration

        # Registration is keyed by content hash, so a retried one never registers twice.
        registration = await retry_transient(
            store,
            what=f"register {spec.id} for job {context.job_id}",
            give_up_after_s=context.settings.job_db_retry_s,
        )
        progress.registered(spec, created=registration.created, count_stage=count_stage)
        await progress.flush()

    async def certify(spec: EnvironmentSpec) -> None:
        async with slots:
            progress.advance("generated")
            outcomes = await context.executor.replay(spec.tools, reference_calls(spec))
            certificate = certificate_from_outcomes(spec, outcomes)
            if not certificate.passed:
                missed = [
                    f"{r.call.tool_name}: expected {r.call.expected_answer!r}"
                    for r in certificate.replays
                    if not r.answer_found
                ]
                errors = [error for _, error in outcomes if error]
                progress.reject(
                    "verified",
                    "certificate_failed",
                    item=f"{spec.id}: {spec.task}",
                    message="; ".join([*errors, *missed])[:1000] or "a replay did not pass",
                )
                await progress.flush()
                return
            progress.advance("verified")
            await register(attach_certificate(spec, certificate), count_stage=True)

    try:
        async for spec in specs:
            if spec.certificate is not None:
                # Certified by its source, which counts its own stages: stored before the
                # source moves on, so a failure here is not counted as registered.
                await register(spec, count_stage=False)
                continue
            if spec.kind == "builtin":
                await register(spec, count_stage=True)
                continue
            if len(pending) >= 2 * concurrency:  # backpressure on the producer
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    pending.discard(task)
                    task.result()
            pending.add(asyncio.create_task(certify(spec)))
        if pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
