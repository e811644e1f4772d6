"""OpenAIChatModel over httpx: retries with backoff, clear errors, and the request cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from astra.redis_server import free_port
from astra_synth.llm import (
    Completion,
    LLMCache,
    LLMRequestRejected,
    LLMUnavailable,
    LLMUsage,
    OpenAIChatModel,
)

MESSAGES = [{"role": "user", "content": "Say hi as JSON."}]


def reply(text: str = '{"hi": 1}', prompt: int = 7, completion: int = 3) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        },
    )


class Server:
    """An httpx transport answering from a list of responses (the last one repeats)."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        self.headers.append(request.headers)
        assert request.url.path == "/v1/chat/completions"
        return self.responses[min(len(self.bodies) - 1, len(self.responses) - 1)]


def model(server: Server, **kwargs: Any) -> OpenAIChatModel:
    return OpenAIChatModel(
        "http://llm.test/v1",
        "tiny",
        backoff_s=0.001,
        transport=httpx.MockTransport(server),
        **kwargs,
    )


async def complete(llm: OpenAIChatModel, **kwargs: Any) -> Completion:
    return await llm.complete(MESSAGES, temperature=0.0, max_tokens=64, **kwargs)


async def test_a_completion_with_its_request_and_usage() -> None:
    server = Server(reply())
    async with model(server, api_key="secret") as llm:
        completion = await complete(llm, response_format={"type": "json_object"})
    assert completion == Completion('{"hi": 1}', 7, 3, cached=False)
    assert server.bodies == [
        {
            "model": "tiny",
            "messages": MESSAGES,
            "temperature": 0.0,
            "max_tokens": 64,
            "response_format": {"type": "json_object"},
        }
    ]
    assert server.headers[0]["authorization"] == "Bearer secret"
    assert (llm.usage.calls, llm.usage.prompt_tokens, llm.usage.completion_tokens) == (1, 7, 3)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, text="overloaded"),
        httpx.Response(429, text="slow down", headers={"retry-after": "0"}),
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, json={"choices": []}),
    ],
)
async def test_transient_failures_are_retried(failure: httpx.Response) -> None:
    server = Server(failure, failure, reply("ok"))
    async with model(server, max_retries=2) as llm:
        assert (await complete(llm)).text == "ok"
    assert llm.http_requests == 3


async def test_failures_past_the_retries_make_the_endpoint_unavailable() -> None:
    server = Server(httpx.Response(502, text="bad gateway"))
    async with model(server, max_retries=3) as llm:
        with pytest.raises(LLMUnavailable, match=r"failed 4 attempts; last error: HTTP 502"):
            await complete(llm)
    assert len(server.bodies) == 4


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refused_endpoint_is_unavailable_at_once(status: int) -> None:
    server = Server(httpx.Response(status, text="no such model"))
    async with model(server, max_retries=5) as llm:
        with pytest.raises(LLMUnavailable, match=f"HTTP {status}: no such model"):
            await complete(llm)
    assert len(server.bodies) == 1


async def test_a_refused_request_is_rejected_without_retries() -> None:
    server = Server(httpx.Response(400, text="prompt longer than the context"))
    async with model(server, max_retries=5) as llm:
        with pytest.raises(LLMRequestRejected, match="longer than the context"):
            await complete(llm)
    assert len(server.bodies) == 1


async def test_an_unreachable_port_fails_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIChatModel(url, "tiny", max_retries=2, backoff_s=0.001) as llm:
        with pytest.raises(LLMUnavailable, match=r"failed 3 attempts; last error: ConnectError"):
            await complete(llm)
    assert llm.http_requests == 3


async def test_a_cache_hit_makes_no_request(tmp_path: Path) -> None:
    server = Server(reply("first"), reply("second"))
    cache = LLMCache(tmp_path / "cache")
    async with model(server, cache=cache) as llm:
        first = await complete(llm)
        again = await complete(llm)
        other = await llm.complete(MESSAGES, temperature=0.5, max_tokens=64)
    assert (first.text, first.cached) == ("first", False)
    assert (again.text, again.cached) == ("first", True)
    assert (again.prompt_tokens, again.completion_tokens) == (7, 3)
    assert (other.text, other.cached) == ("second", False)  # other sampling: another key
    assert len(server.bodies) == 2
    assert len(cache) == 2
    assert (llm.usage.calls, llm.usage.cached_calls) == (2, 1)
    # a new client on the same directory: a re-run costs nothing
    async with model(Server(), cache=LLMCache(tmp_path / "cache")) as rerun:
        assert (await complete(rerun)).text == "first"
    assert rerun.http_requests == 0


async def test_a_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path)
    server = Server(reply("fresh"))
    async with model(server, cache=cache) as llm:
        body = llm.request_body(MESSAGES, temperature=0.0, max_tokens=64)
        cache.put(body, Completion("stale", 1, 1))
        corrupt_every_entry(tmp_path)
        assert (await complete(llm)).text == "fresh"
    assert cache.get(body) == Completion("fresh", 7, 3, cached=True)


def corrupt_every_entry(directory: Path) -> None:
    for entry in directory.glob("*/*.json"):
        entry.write_text("{not json")


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIChatModel("llm.test/v1", "tiny")
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIChatModel("http://llm.test/v1", "tiny", max_retries=-1)


def test_usage_counts_cached_calls_apart() -> None:
    usage = LLMUsage()
    usage.record(Completion("a", 10, 2), "decomposed")
    usage.record(Completion("a", 10, 2, cached=True), "decomposed")
    assert (usage.calls, usage.cached_calls, usage.total_tokens) == (1, 1, 12)
    assert usage.by_stage == {"decomposed": 2}
