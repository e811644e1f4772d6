"""The pipeline through OpenAIChatModel over real HTTP: a local fake of the OpenAI API (a
FastAPI app under uvicorn whose answers come from the scripted LLM double), the request
cache making a re-run free and identical, and an unreachable endpoint failing the run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from http_support import running
from scripted_llm import FREEDONIA, SandboxExecutor, ScriptedLLM, fake_openai, freedonia_script

from astra.redis_server import free_port
from astra_envhost.sandbox import find_bwrap
from astra_proto import EnvironmentSpec
from astra_synth.llm import LLMCache, LLMUnavailable, OpenAIChatModel
from astra_synth.llm_pipeline import Accepted, PipelineSettings, StageCounts, synthesize

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]


async def synthesize_with(llm: OpenAIChatModel) -> EnvironmentSpec:
    outcomes = [
        outcome
        async for outcome in synthesize(
            [FREEDONIA],
            llm=llm,
            executor=SandboxExecutor(),
            settings=PipelineSettings(),
            progress=StageCounts(),
            job_id="job-http",
        )
    ]
    (outcome,) = outcomes
    assert isinstance(outcome, Accepted), outcome
    return outcome.spec


async def test_a_rerun_is_served_from_the_cache_with_zero_http_calls(tmp_path: Path) -> None:
    requests: list[dict[str, Any]] = []
    double = ScriptedLLM(freedonia_script())
    async with asyncio.timeout(60), running(fake_openai(double, requests), free_port()) as url:
        async with OpenAIChatModel(
            f"{url}/v1", "scripted", cache=LLMCache(tmp_path / "llm-cache")
        ) as first_llm:
            first = await synthesize_with(first_llm)
        made = len(requests)
        assert made == first_llm.http_requests == first_llm.usage.calls == 12
        assert all(body["response_format"] == {"type": "json_object"} for body in requests)
        assert first.provenance is not None
        assert first.provenance.generator == "scripted"

        async with OpenAIChatModel(
            f"{url}/v1", "scripted", cache=LLMCache(tmp_path / "llm-cache")
        ) as second_llm:
            second = await synthesize_with(second_llm)
        assert len(requests) == made  # the server saw nothing new
        assert second_llm.http_requests == 0
        assert (second_llm.usage.calls, second_llm.usage.cached_calls) == (0, 12)
    assert second.id == first.id
    assert second.tools == first.tools
    assert double.unscripted == []


async def test_an_unreachable_endpoint_fails_the_run_with_a_clear_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIChatModel(url, "scripted", max_retries=2, backoff_s=0.001) as llm:
        with pytest.raises(LLMUnavailable, match=r"127\.0\.0\.1.*failed 3 attempts"):
            await synthesize_with(llm)
    assert llm.http_requests == 3
