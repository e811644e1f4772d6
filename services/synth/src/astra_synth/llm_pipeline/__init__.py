"""The LLM environment-synthesis pipeline (docs/method.md B1-B5) against any OpenAI-compatible
chat endpoint. See docs/synth-llm.md."""

from astra_synth.llm_pipeline.executor import CallOutcome, ExecutorUnavailable, ToolExecutor
from astra_synth.llm_pipeline.items import (
    KnowledgeItem,
    LineError,
    QaItem,
    parse_knowledge_lines,
    parse_qa_lines,
)
from astra_synth.llm_pipeline.outcomes import (
    DECOMPOSED,
    MERGED,
    PASSED_QUALITY,
    REASONS,
    REGISTERED,
    STAGES,
    TOOLS_VERIFIED,
    Accepted,
    PipelineOutcome,
    ProgressSink,
    Rejected,
    StageCounts,
)
from astra_synth.llm_pipeline.pipeline import synthesize
from astra_synth.llm_pipeline.settings import PipelineSettings

__all__ = [
    "DECOMPOSED",
    "MERGED",
    "PASSED_QUALITY",
    "REASONS",
    "REGISTERED",
    "STAGES",
    "TOOLS_VERIFIED",
    "Accepted",
    "CallOutcome",
    "ExecutorUnavailable",
    "KnowledgeItem",
    "LineError",
    "PipelineOutcome",
    "PipelineSettings",
    "ProgressSink",
    "QaItem",
    "Rejected",
    "StageCounts",
    "ToolExecutor",
    "parse_knowledge_lines",
    "parse_qa_lines",
    "synthesize",
]
