"""LLM environment synthesis: LLM calls and tokens per registered environment.

    .venv/bin/python bench/synth_llm.py

The LLM is the SCRIPTED TEST DOUBLE of tests/synth/scripted_llm.py, so the figures are the
double's counts (its "tokens" are whitespace-separated words), not those of a real model:
they show how many requests each stage makes per environment and what a re-run costs, not
what a real model would write. Tool code runs for real in envhost's bubblewrap sandbox.

The double sits behind ``OpenAIChatModel`` (an in-process httpx transport, no network) with a
fresh ``LLMCache``; the same job is then run again on the same cache (the baseline, run in
the same process, is the first run).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# The scripted test double lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "synth"))
from scripted_llm import (
    FREEDONIA,
    KNOWLEDGE,
    MERGE_ITEM,
    SandboxExecutor,
    Script,
    ScriptedLLM,
    freedonia_script,
    knowledge_script,
    merge_script,
)

from astra_synth.llm import LLMCache, LLMUsage, OpenAIChatModel
from astra_synth.llm_pipeline import (
    Accepted,
    KnowledgeItem,
    PipelineSettings,
    QaItem,
    StageCounts,
    synthesize,
)

REJECTED = QaItem(question="Which river flows through Fredville?", answer="the Fred")


def job() -> tuple[list[QaItem | KnowledgeItem], Script]:
    """Three items that become environments (a 2-hop QA chain, a 2-hop knowledge question,
    two same-intent tools merged after one failed merge) and one the decomposer garbles."""
    script: Script = {**freedonia_script(), **knowledge_script(), **merge_script()}
    script[("decompose", REJECTED.question)] = ["Sure! The river is the Fred."]
    return [FREEDONIA, KNOWLEDGE, MERGE_ITEM, REJECTED], script


def transport(double: ScriptedLLM) -> httpx.MockTransport:
    """The OpenAI chat-completions API, answered in process by the double."""

    async def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        completion = await double.complete(
            body["messages"], temperature=body["temperature"], max_tokens=body["max_tokens"]
        )
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"role": "assistant", "content": completion.text}}],
                "usage": {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                },
            },
        )

    return httpx.MockTransport(handle)


async def run_job(cache_dir: Path) -> dict[str, Any]:
    items, script = job()
    double = ScriptedLLM(script)
    executor = SandboxExecutor()
    usage = LLMUsage()
    progress = StageCounts()
    started = time.perf_counter()
    async with OpenAIChatModel(
        "http://llm.local/v1",
        "scripted-double",
        cache=LLMCache(cache_dir),
        transport=transport(double),
    ) as llm:
        accepted = [
            outcome
            async for outcome in synthesize(
                items,
                llm=llm,
                executor=executor,
                settings=PipelineSettings(),
                progress=progress,
                job_id="bench",
                usage=usage,
            )
            if isinstance(outcome, Accepted)
        ]
        http_requests = llm.http_requests
    return {
        "items": len(items),
        "registered": len(accepted),
        "ids": sorted(a.spec.id for a in accepted),
        "usage": usage,
        "http_requests": http_requests,
        "sandbox_runs": executor.runs,
        "seconds": time.perf_counter() - started,
        "rejected": {s: r for s, r in progress.rejected.items() if r},
    }


def report(name: str, run: dict[str, Any]) -> None:
    usage: LLMUsage = run["usage"]
    n = max(run["registered"], 1)
    print(f"{name}: {run['registered']}/{run['items']} items registered in {run['seconds']:.2f} s")
    print(f"  HTTP requests to the LLM:      {run['http_requests']}")
    print(f"  LLM calls made / from cache:   {usage.calls} / {usage.cached_calls}")
    print(f"  per registered environment:    {usage.calls / n:.1f} calls, "
          f"{usage.prompt_tokens / n:.0f} prompt + {usage.completion_tokens / n:.0f} completion "
          f"tokens (double's counts), {run['sandbox_runs'] / n:.1f} sandbox runs")  # fmt: skip
    stages = ", ".join(f"{stage} {count}" for stage, count in usage.by_stage.items())
    print(f"  requests by stage (all items): {stages}")
    print(f"  rejected: {run['rejected']}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        first = await run_job(Path(directory))
        second = await run_job(Path(directory))
    report("first run (empty cache)", first)
    report("re-run (same cache)", second)
    same = first["ids"] == second["ids"]
    ratio = second["http_requests"] / max(first["http_requests"], 1)
    print(f"re-run: same environments {same}; HTTP requests {second['http_requests']} vs "
          f"{first['http_requests']} (ratio {ratio:.2f})")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
