"""The LLM sources of a job (``qa``, ``knowledge``): the pipeline of ``astra_synth.llm_pipeline``
against the job's OpenAI-compatible endpoint, with a response cache under the data dir."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from astra_proto import EnvironmentSpec, Provenance
from astra_proto.api.synth import EnvironmentJobRequest
from astra_synth.environments.source import JobContext, with_job
from astra_synth.llm import LLMUsage
from astra_synth.llm_endpoint import chat_model
from astra_synth.llm_pipeline import (
    Accepted,
    KnowledgeItem,
    PipelineSettings,
    QaItem,
    parse_qa_lines,
    synthesize,
)

MAX_LINE_ERRORS_KEPT = 100
LLM_STAGES = ("decomposed", "passed_quality", "tools_verified", "merged", "registered")


class LlmSource:
    """Environments of the LLM pipeline from QA pairs or knowledge; certified as they pass."""

    @property
    def stages(self) -> Sequence[str]:
        """The pipeline's stages, ``registered`` included."""
        return LLM_STAGES

    def environments(
        self, request: EnvironmentJobRequest, context: JobContext
    ) -> AsyncIterator[EnvironmentSpec]:
        """See ``llm_environments``."""
        return llm_environments(request, context)


async def llm_environments(
    request: EnvironmentJobRequest, context: JobContext
) -> AsyncIterator[EnvironmentSpec]:
    """Certified specs from the LLM pipeline, as each item passes (the pipeline counts its own
    stages, ``registered`` included, once the consumer has stored the spec). Malformed QA
    lines are counted (``malformed_line``), listed in the job's result, and skipped."""
    settings = context.settings
    pipeline = PipelineSettings.model_validate(request.pipeline)
    items: list[QaItem | KnowledgeItem]
    if request.qa_jsonl is not None:
        qa_items, line_errors = parse_qa_lines(request.qa_jsonl)
        items = list(qa_items)
        for error in line_errors:
            context.progress.reject(
                "decomposed", "malformed_line", item=f"line {error.line}", message=error.message
            )
        context.progress.notes["line_errors"] = [
            {"line": e.line, "message": e.message} for e in line_errors[:MAX_LINE_ERRORS_KEPT]
        ]
        rejected_before = len(line_errors)
    else:
        items = [KnowledgeItem(text=text) for text in request.knowledge or []]
        rejected_before = 0
    items = items[: request.count]
    await context.progress.flush(force=True)
    model = request.llm_model or settings.llm_model
    by_stage = LLMUsage()  # the chat model counts calls and tokens; this, calls per stage
    async with chat_model(settings, request.llm_base_url, request.llm_model) as llm:
        async for outcome in synthesize(
            items,
            llm=llm,
            executor=context.executor,
            settings=pipeline,
            progress=context.progress,
            job_id=context.job_id,
            usage=by_stage,
            rejected_before=rejected_before,
        ):
            context.progress.notes["llm_usage"] = dataclasses.asdict(llm.usage) | {
                "by_stage": dict(by_stage.by_stage)
            }
            await context.progress.flush()
            if isinstance(outcome, Accepted):
                made_by = Provenance(source="llm", generator=model)
                yield with_job(outcome.spec, context.job_id, made_by)
