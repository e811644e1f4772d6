"""Rollout orchestration overhead: the agent loop against a zero-latency policy stub.

    .venv/bin/python bench/rollout.py [--quick] [--turns 4] [--profile]
        [--vllm-url URL [--vllm-only] [--vllm-over-httpx] [--vllm-model M]
         [--vllm-concurrency 8] [--vllm-episodes 64]]

The policy is an OpenAI-compatible stub in a process of its own (a minimal asyncio HTTP/1.1
server answering from a script at once, with vLLM-style ``prompt_token_ids``, ``token_ids`` and
``logprobs``), and tools run in process (an in-memory ``EpisodeBackend``), so what is measured
is the rollout's own work per turn: building the request, the HTTP client, parsing the reply
and its tool calls, token recording, running the calls, and the episode bookkeeping. Each
episode has ``--turns`` policy calls (tool calls, then a final answer).

For 1, 64 and 256 concurrent episodes it reports episodes/s, turns/s and the rollout
process's CPU per turn (the orchestration overhead; the target is <= 3 ms at 256), and in the
same run, for comparison: ``PolicyClient.complete`` alone on the same requests (no agent loop
around it), and the rollout with the policy posted through the shared ``httpx`` client
(``PolicyClient(direct_http=False)``, how every request went before the lean HTTP path).

``--vllm-url`` adds a run against a real vLLM server (``python -m astra_rollout.policy_server
--model-dir DIR --port P`` starts one): generated tokens/s of rollout episodes (the agent loop,
tools in process) against vLLM's own throughput on the very requests those episodes sent,
posted directly at the same concurrency, in alternated rounds; the target ratio is >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import json
import os
import pstats
import sys
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from astra.redis_server import free_port
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    Message,
    RewardBreakdown,
    SubQuestion,
    SyntheticTool,
    ToolSpec,
)
from astra_proto.api.rollout import EpisodeLimits, SamplingParams
from astra_rollout.agent import run_episode
from astra_rollout.envhost_client import ToolOutcome, ToolSession
from astra_rollout.policy import Completion, PolicyClient

CONCURRENCY = (1, 64, 256)
TARGET_CPU_MS_PER_TURN = 3.0
TARGET_VLLM_RATIO = 0.8
VLLM_ROUNDS = 4

TOOL = ToolSpec(
    name="lookup",
    description="Look a key up.",
    parameters={"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
)
SPEC = EnvironmentSpec(
    task="Look up the keys k0, k1 and k2 and report their values.",
    domain="bench",
    sub_questions=[SubQuestion(id="q1", question="k0?", answer="v-k0", tool_name="lookup")],
    tools=[SyntheticTool(spec=TOOL, code="def lookup(key):\n    return {}\n", entrypoint="lookup")],
)


# -- the policy stub (run as a child process: `bench/rollout.py --serve-stub PORT TURNS`) ----


def _tokens(text: str) -> list[int]:
    """One token per whitespace-separated word: enough to make token arrays of a real size."""
    return [zlib.crc32(word.encode()) % 50_000 for word in text.split()]


def _render(message: dict[str, Any]) -> str:
    calls = " ".join(
        f"call {c['function']['name']} {c['function']['arguments']}"
        for c in message.get("tool_calls") or []
    )
    return f" <{message['role']}> {message.get('content') or ''} {calls} </{message['role']}> "


def stub_reply(body: dict[str, Any], turns: int) -> dict[str, Any]:
    """The scripted completion: ``turns - 1`` tool calls, then a final answer."""
    messages = body["messages"]
    turn = sum(m["role"] == "assistant" for m in messages)
    if turn < turns - 1:
        arguments = json.dumps({"key": f"k{turn}"})
        call = {"id": f"call_{turn}", "type": "function",
                "function": {"name": "lookup", "arguments": arguments}}  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
    else:
        message = {"role": "assistant", "content": "The values are v-k0, v-k1 and v-k2."}
    prompt = _tokens("".join(_render(m) for m in messages))
    completion = _tokens(_render(message))
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": body["model"],
        "prompt_token_ids": prompt,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
            "token_ids": completion,
            "logprobs": {"content": [{"token": "t", "logprob": -0.5} for _ in completion]},
        }],
        "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(completion),
                  "total_tokens": len(prompt) + len(completion)},
    }  # fmt: skip


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, turns: int
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length))
            payload = json.dumps(stub_reply(body, turns)).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_stub(port: int, turns: int) -> None:
    """Serve the stub on loopback until killed; prints ``ready`` once listening."""
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(r, w, turns), "127.0.0.1", port, backlog=1024
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


@asynccontextmanager
async def stub_process(turns: int) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-stub", str(port), str(turns),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        if (await asyncio.wait_for(process.stdout.readline(), 30)).strip() != b"ready":
            raise RuntimeError("the policy stub did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        await process.wait()


# -- in-process tools ------------------------------------------------------------------------


class InProcessSession:
    """Tools answered in process, at once."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode

    async def list_tools(self) -> list[ToolSpec]:
        return [TOOL]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.episode.calls.append(None)  # type: ignore[arg-type]  # only counted
        return ToolOutcome(
            json.dumps({"key": arguments["key"], "value": "v-" + arguments["key"]}), False
        )


class InProcessEpisodes:
    """An ``EpisodeBackend`` with no envhost: the bench measures the rollout alone."""

    def __init__(self) -> None:
        self.count = 0

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        self.count += 1
        now = datetime.now(UTC)
        return Episode(
            id=f"ep_{self.count}", env_id=request.env_id, mcp_url="inproc://", tools=[TOOL],
            created_at=now, last_active_at=now,
        )  # fmt: skip

    @asynccontextmanager
    async def tool_session(self, episode: Episode) -> AsyncIterator[ToolSession]:
        yield InProcessSession(episode)

    async def advance_turn(self, episode: Episode) -> int:
        raise AssertionError("single-turn task")

    async def score(self, episode: Episode, final_answer: str | None) -> RewardBreakdown:
        return RewardBreakdown.compute(1, ["q1"], len(episode.calls))

    async def close_episode(self, episode: Episode) -> None:
        return None


# -- measurements ----------------------------------------------------------------------------


async def rollout_run(policy: PolicyClient, concurrency: int, episodes: int) -> dict[str, float]:
    backend = InProcessEpisodes()
    gate = asyncio.Semaphore(concurrency)
    limits = EpisodeLimits(max_turns=64)
    sampling = SamplingParams(max_tokens=64)
    turns = 0
    tokens = 0

    async def one() -> None:
        nonlocal turns, tokens
        async with gate:
            t = await run_episode(
                SPEC, policy=policy, episodes=backend, limits=limits, sampling=sampling
            )
        if t.failure_reason or t.text_only:
            raise RuntimeError(t.failure_reason or t.metadata.get("token_recording"))
        turns += t.turns
        tokens += sum(t.loss_mask or [])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(episodes)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"episodes": episodes, "turns": turns, "wall": wall, "cpu": cpu, "tokens": tokens}


async def complete_run(
    policy: PolicyClient, concurrency: int, calls: int, prompts: list[list[Message]]
) -> dict[str, float]:
    """``PolicyClient.complete`` on the turns' requests in turn, with no agent loop around."""
    gate = asyncio.Semaphore(concurrency)
    sampling = SamplingParams(max_tokens=64)

    async def one(i: int) -> None:
        async with gate:
            await policy.complete(prompts[i % len(prompts)], [TOOL], sampling, turn=i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"calls": calls, "wall": wall, "cpu": cpu}


async def conversation_prompts(policy: PolicyClient) -> list[list[Message]]:
    """The messages of every turn's request of one scripted episode, as the agent sends them."""
    t = await run_episode(SPEC, policy=policy, episodes=InProcessEpisodes())
    return [t.messages[:i] for i, m in enumerate(t.messages) if m.role == "assistant"]


async def profile_run(policy: PolicyClient, concurrency: int, episodes: int) -> None:
    """The rollout under cProfile: where its CPU per turn goes (profiling inflates it)."""
    await rollout_run(policy, concurrency, concurrency)  # warm-up: connections, imports
    profiler = cProfile.Profile()
    profiler.enable()
    r = await rollout_run(policy, concurrency, episodes)
    profiler.disable()
    print(f"{concurrency} concurrent, {episodes} episodes, {r['turns']:.0f} turns: "
          f"{1000 * r['cpu'] / r['turns']:.2f} ms CPU per turn under the profiler")  # fmt: skip
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
        print(out.getvalue())


def episodes_for(concurrency: int, quick: bool) -> int:
    return max(64, concurrency * 4) if quick else max(256, concurrency * 16)


async def bench(
    quick: bool,
    turns: int,
    vllm_url: str | None,
    vllm_model: str,
    vllm_concurrency: int = 8,
    vllm_episodes: int = 64,
    profile: bool = False,
    vllm_only: bool = False,
    vllm_over_httpx: bool = False,
) -> None:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=300)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {turns} turns per episode")
    if vllm_url and vllm_only:
        async with httpx.AsyncClient(limits=limits, timeout=120) as http:
            await vllm_bench(
                http, vllm_url, vllm_model, vllm_concurrency, vllm_episodes, not vllm_over_httpx
            )
        return
    async with httpx.AsyncClient(limits=limits, timeout=120) as http, stub_process(turns) as url:
        policy = PolicyClient(http=http, base_url=url, model="stub")
        over_httpx = PolicyClient(http=http, base_url=url, model="stub", direct_http=False)
        if profile:
            try:
                await profile_run(policy, 256, episodes_for(256, quick))
            finally:
                await policy.aclose()
            return
        try:
            prompts = await conversation_prompts(policy)
            await rollout_run(policy, 8, 16)  # warm-up: connections, imports
            await rollout_run(over_httpx, 8, 16)
            print("\n| concurrent | episodes | episodes/s | turns/s | rollout CPU ms/turn | "
                  "complete() alone CPU ms/call | over httpx: turns/s | over httpx: CPU "
                  "ms/turn |")  # fmt: skip
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for concurrency in CONCURRENCY:
                episodes = episodes_for(concurrency, quick)
                r = await rollout_run(policy, concurrency, episodes)
                c = await complete_run(policy, concurrency, int(r["turns"]), prompts)
                # the old path is slow: a quick run's worth of episodes measures it well enough
                h = await rollout_run(over_httpx, concurrency, episodes_for(concurrency, True))
                cpu_turn = 1000 * r["cpu"] / r["turns"]
                print(
                    f"| {concurrency} | {episodes} | {r['episodes'] / r['wall']:,.1f} | "
                    f"{r['turns'] / r['wall']:,.0f} | {cpu_turn:.2f} | "
                    f"{1000 * c['cpu'] / c['calls']:.2f} | {h['turns'] / h['wall']:,.0f} | "
                    f"{1000 * h['cpu'] / h['turns']:.2f} |"
                )
                if concurrency == 256:
                    verdict = "meets" if cpu_turn <= TARGET_CPU_MS_PER_TURN else "MISSES"
                    print(f"\nat 256: {cpu_turn:.2f} ms CPU per turn, {verdict} the "
                          f"{TARGET_CPU_MS_PER_TURN} ms target")  # fmt: skip
        finally:
            await policy.aclose()
        if vllm_url:
            await vllm_bench(
                http, vllm_url, vllm_model, vllm_concurrency, vllm_episodes, not vllm_over_httpx
            )


@dataclass(slots=True)
class RecordingPolicy(PolicyClient):
    """A ``PolicyClient`` that keeps every request it made and the tokens each generated."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    generated: int = 0

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        sampling: SamplingParams,
        turn: int = 0,
    ) -> Completion:
        self.bodies.append(self.request_body(messages, tools, sampling))
        completion = await PolicyClient.complete(self, messages, tools, sampling, turn)
        self.generated += completion.completion_tokens or 0
        return completion


async def vllm_bench(
    http: httpx.AsyncClient,
    url: str,
    model: str,
    concurrency: int,
    episodes: int,
    direct_http: bool = True,
) -> None:
    """Generated tokens/s of rollout episodes against vLLM, and of the very requests those
    episodes sent posted to vLLM directly, at the same concurrency. Rounds of each, alternated,
    so that neither path has the machine to itself at a quieter moment."""
    sampling = SamplingParams(max_tokens=128, temperature=0.0)
    backend = InProcessEpisodes()
    totals = {"rollout": [0.0, 0.0], "direct": [0.0, 0.0]}  # tokens, seconds

    async def rollout_round(policy: RecordingPolicy, count: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                t = await run_episode(SPEC, policy=policy, episodes=backend, sampling=sampling)
            if t.failure_reason:
                raise RuntimeError(t.failure_reason)

        wall = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        totals["rollout"][0] += policy.generated
        totals["rollout"][1] += time.perf_counter() - wall

    async def direct_round(bodies: list[dict[str, Any]]) -> None:
        gate = asyncio.Semaphore(concurrency)
        tokens = 0

        async def one(body: dict[str, Any]) -> None:
            nonlocal tokens
            async with gate:
                response = await http.post(url + "/chat/completions", json=body, timeout=600)
            response.raise_for_status()
            tokens += response.json()["usage"]["completion_tokens"]

        wall = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        totals["direct"][0] += tokens
        totals["direct"][1] += time.perf_counter() - wall

    warm = RecordingPolicy(http=http, base_url=url, model=model, direct_http=direct_http)
    await rollout_round(warm, concurrency)  # warm-up: connections, vLLM's prefix cache
    await warm.aclose()
    totals = {name: [0.0, 0.0] for name in totals}
    turns = 0
    for _ in range(VLLM_ROUNDS):
        policy = RecordingPolicy(http=http, base_url=url, model=model, direct_http=direct_http)
        try:
            await rollout_round(policy, episodes // VLLM_ROUNDS)
        finally:
            await policy.aclose()
        turns += len(policy.bodies)
        await direct_round(policy.bodies)
    rollout_tps = totals["rollout"][0] / totals["rollout"][1]
    direct_tps = totals["direct"][0] / totals["direct"][1]
    ratio = rollout_tps / direct_tps
    verdict = "meets" if ratio >= TARGET_VLLM_RATIO else "MISSES"
    client = "the lean HTTP path" if direct_http else "httpx (direct_http=False)"
    print(f"\nvLLM at {url} ({model}), {concurrency} concurrent, {episodes} episodes "
          f"({turns} policy calls; rollout over {client}), the same requests on both "
          "paths:")  # fmt: skip
    print("| path | generated tokens | seconds | generated tokens/s |\n|---|---:|---:|---:|")
    for name, (tokens, seconds) in totals.items():
        print(f"| {name} | {tokens:,.0f} | {seconds:,.1f} | {tokens / seconds:,.1f} |")
    print(f"ratio {ratio:.2f} ({verdict} the {TARGET_VLLM_RATIO} target)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-stub":
        asyncio.run(serve_stub(int(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes per run")
    parser.add_argument("--turns", type=int, default=4, help="policy calls per episode")
    parser.add_argument("--vllm-url", help="also measure against this vLLM server (.../v1)")
    parser.add_argument("--vllm-model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--vllm-concurrency", type=int, default=8)
    parser.add_argument("--vllm-episodes", type=int, default=64, help="per path, in 4 rounds")
    parser.add_argument("--vllm-only", action="store_true", help="skip the stub runs")
    parser.add_argument(
        "--vllm-over-httpx", action="store_true", help="rollout policy posts through httpx"
    )
    parser.add_argument(
        "--profile", action="store_true", help="only: 256 concurrent under cProfile, top functions"
    )
    args = parser.parse_args()
    if importlib.util.find_spec("sniffio") is None:
        # httpcore tries `import sniffio` for every request; absent, each try searches all of
        # sys.path again (~0.3 ms). A None entry makes it fail at once, with the same outcome.
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    asyncio.run(
        bench(
            args.quick,
            args.turns,
            args.vllm_url,
            args.vllm_model,
            args.vllm_concurrency,
            args.vllm_episodes,
            args.profile,
            args.vllm_only,
            args.vllm_over_httpx,
        )
    )


if __name__ == "__main__":
    main()
