"""``synthesize``: items in, certified environments (or rejections) out, as each finishes.

Per item: decompose (B1) -> judge necessity and quality (B2) -> build and verify a tool per
tool-needing sub-question (B3) -> cluster and merge same-intent tools (B4) -> package and
certify (B5). Items run concurrently (``settings.concurrency``); outcomes are yielded in the
order they finish. ``LLMUnavailable`` and ``ExecutorUnavailable`` end the whole run (the job
fails with their message); everything else that goes wrong with one item rejects that item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from astra_proto import Provenance, SyntheticTool
from astra_synth.llm import ChatModel, LLMUsage
from astra_synth.llm_pipeline.ask import StageAsker, cut
from astra_synth.llm_pipeline.decompose import decompose
from astra_synth.llm_pipeline.executor import ToolExecutor
from astra_synth.llm_pipeline.items import KnowledgeItem, QaItem
from astra_synth.llm_pipeline.judge import judge
from astra_synth.llm_pipeline.merge import merge_tools
from astra_synth.llm_pipeline.outcomes import (
    DECOMPOSED,
    MERGED,
    PASSED_QUALITY,
    REGISTERED,
    STAGES,
    TOOLS_VERIFIED,
    Accepted,
    PipelineOutcome,
    ProgressSink,
    Rejected,
    StageFailure,
)
from astra_synth.llm_pipeline.package import build_spec, certify
from astra_synth.llm_pipeline.settings import PipelineSettings
from astra_synth.llm_pipeline.tool_stage import ToolBuilder


async def synthesize(
    items: Sequence[QaItem | KnowledgeItem],
    *,
    llm: ChatModel,
    executor: ToolExecutor,
    settings: PipelineSettings,
    progress: ProgressSink,
    job_id: str | None,
    usage: LLMUsage | None = None,
    rejected_before: int = 0,
) -> AsyncIterator[PipelineOutcome]:
    """One ``Accepted`` (spec with a passed certificate) or ``Rejected`` per item, as each
    finishes.

    Progress: every stage's total is set to ``len(items)`` up front; ``advance(stage)`` as an
    item passes a stage; ``reject(stage, reason)`` as one is dropped. ``registered`` advances
    for an ``Accepted`` once the consumer asks for the next outcome, i.e. after its loop body
    (which stores the spec) finished without raising. ``usage`` (optional) counts LLM calls
    and tokens by stage. ``rejected_before``: items the caller rejected at the first stage
    already (malformed input lines), counted in that stage's total.
    """
    for stage in STAGES:
        progress.set_total(stage, len(items) + (rejected_before if stage == DECOMPOSED else 0))
    asker = StageAsker(llm, settings, usage if usage is not None else LLMUsage())
    generator = getattr(llm, "model", None)
    limit = asyncio.Semaphore(settings.concurrency)

    async def run(index: int, item: QaItem | KnowledgeItem) -> PipelineOutcome:
        async with limit:
            return await process(
                index, item, asker, executor, settings, progress, job_id, generator
            )

    tasks = [asyncio.create_task(run(i, item)) for i, item in enumerate(items)]
    try:
        for next_done in asyncio.as_completed(tasks):
            outcome = await next_done
            yield outcome
            if isinstance(outcome, Accepted):
                progress.advance(REGISTERED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def process(
    index: int,
    item: QaItem | KnowledgeItem,
    asker: StageAsker,
    executor: ToolExecutor,
    settings: PipelineSettings,
    progress: ProgressSink,
    job_id: str | None,
    generator: object = None,
) -> PipelineOutcome:
    """One item through every stage (see ``synthesize``)."""
    asker = asker.for_item()
    try:
        decomposition = await decompose(item, asker, settings)
        progress.advance(DECOMPOSED)
        judged = await judge(decomposition, asker, settings)
        progress.advance(PASSED_QUALITY)
        builder = ToolBuilder(decomposition, asker, executor, settings)
        tools: dict[str, SyntheticTool] = {}
        for question in decomposition.sub_questions_in_order():
            if judged.needs_tool[question.id]:
                tools[question.id] = await builder.build(question)
        progress.advance(TOOLS_VERIFIED)
        final_tools, names = await merge_tools(tools, builder, asker, executor, settings)
        progress.advance(MERGED)
        provenance = Provenance(
            source="qa" if isinstance(item, QaItem) else "knowledge",
            job_id=job_id,
            generator=generator if isinstance(generator, str) else None,
            created_at=datetime.now(UTC),
        )
        spec = build_spec(decomposition, final_tools, names, provenance)
        spec = await certify(spec, executor)
    except StageFailure as failure:
        excerpt = cut(asker.last_reply, MAX_EXCERPT_CHARS)
        progress.reject(
            failure.stage,
            failure.reason,
            item=f"item {index}: {describe(item)}",
            message=failure.detail or None,
            excerpt=excerpt or None,
        )
        return Rejected(index, failure.stage, failure.reason, failure.detail, excerpt)
    return Accepted(spec=spec, item_index=index)


MAX_EXCERPT_CHARS = 400
"""How much of the model's last reply a rejection keeps."""


def describe(item: QaItem | KnowledgeItem) -> str:
    """A short label of an input item: its question, or the start of its text."""
    return cut(item.question if isinstance(item, QaItem) else item.text, 160)
