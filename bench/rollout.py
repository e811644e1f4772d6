"""Rollout orchestration overhead: the agent loop against a zero-latency policy stub.

    .venv/bin/python bench/rollout.py [--quick] [--turns 4] [--vllm-url URL --vllm-model M]

The policy is an OpenAI-compatible stub in a process of its own (a minimal asyncio HTTP/1.1
server answering from a script at once, with vLLM-style ``prompt_token_ids``, ``token_ids`` and
``logprobs``), and tools run in process (an in-memory ``EpisodeBackend``), so what is measured
is the rollout's own work per turn: building the request, the shared ``httpx`` client, parsing
the reply and its tool calls, token recording, running the calls, and the episode bookkeeping.
Each episode has ``--turns`` policy calls (tool calls, then a final answer).

For 1, 64 and 256 concurrent episodes it reports episodes/s, turns/s and the rollout
process's CPU per turn (the orchestration overhead; the target is <= 3 ms at 256), against
a baseline in the same run: the same number of chat-completion POSTs through the same
client with no agent loop around them.

``--vllm-url`` adds a run against a real vLLM server: rollout generation tokens/s for
episodes of one policy call each, against vLLM's own throughput on the same prompts sent
directly (the same concurrency); the target ratio is >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from astra.redis_server import free_port
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    RewardBreakdown,
    SubQuestion,
    SyntheticTool,
    ToolSpec,
)
from astra_rollout.agent import EpisodeLimits, run_episode
from astra_rollout.envhost_client import ToolOutcome, ToolSession
from astra_rollout.policy import PolicyClient, SamplingParams

CONCURRENCY = (1, 64, 256)
TARGET_CPU_MS_PER_TURN = 3.0
TARGET_VLLM_RATIO = 0.8

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
        if t.failure_reason:
            raise RuntimeError(t.failure_reason)
        turns += t.turns
        tokens += sum(t.loss_mask or [])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(episodes)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"episodes": episodes, "turns": turns, "wall": wall, "cpu": cpu, "tokens": tokens}


async def baseline_run(
    http: httpx.AsyncClient, url: str, model: str, concurrency: int, requests: int,
    bodies: list[dict[str, Any]],
) -> dict[str, float]:  # fmt: skip
    """The same chat-completion POSTs through the same client, with no agent loop."""
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        async with gate:
            response = await http.post(url + "/chat/completions", json=bodies[i % len(bodies)])
        response.raise_for_status()
        tokens += response.json()["usage"]["completion_tokens"]

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"requests": requests, "wall": wall, "cpu": cpu, "tokens": tokens}


def conversation_bodies(model: str, turns: int) -> list[dict[str, Any]]:
    """The request of every turn of one scripted episode, as the agent sends them."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": SPEC.task}]
    bodies = []
    for _ in range(turns):
        body = {"model": model, "messages": list(messages), "tools": [TOOL.to_openai()],
                "tool_choice": "auto", "logprobs": True, "return_token_ids": True,
                "max_tokens": 64}  # fmt: skip
        bodies.append(body)
        reply = stub_reply(body, turns)["choices"][0]["message"]
        messages.append(reply)
        for call in reply.get("tool_calls") or []:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "{}"})
    return bodies


async def bench(quick: bool, turns: int, vllm_url: str | None, vllm_model: str) -> None:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=300)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {turns} turns per episode")
    async with httpx.AsyncClient(limits=limits, timeout=120) as http, stub_process(turns) as url:
        policy = PolicyClient(http=http, base_url=url, model="stub")
        bodies = conversation_bodies("stub", turns)
        await rollout_run(policy, 8, 16)  # warm-up: connections, imports
        print("\n| concurrent | episodes | episodes/s | turns/s | rollout CPU ms/turn | "
              "baseline POSTs/s | baseline CPU ms/POST | CPU ratio |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for concurrency in CONCURRENCY:
            episodes = max(32, concurrency * (2 if quick else 6))
            r = await rollout_run(policy, concurrency, episodes)
            b = await baseline_run(http, url, "stub", concurrency, int(r["turns"]), bodies)
            cpu_turn = 1000 * r["cpu"] / r["turns"]
            cpu_post = 1000 * b["cpu"] / b["requests"]
            print(
                f"| {concurrency} | {episodes} | {r['episodes'] / r['wall']:,.1f} | "
                f"{r['turns'] / r['wall']:,.0f} | {cpu_turn:.2f} | "
                f"{b['requests'] / b['wall']:,.0f} | {cpu_post:.2f} | {cpu_turn / cpu_post:.2f} |"
            )
            if concurrency == 256:
                verdict = "meets" if cpu_turn <= TARGET_CPU_MS_PER_TURN else "MISSES"
                print(f"\nat 256: {cpu_turn:.2f} ms CPU per turn, {verdict} the "
                      f"{TARGET_CPU_MS_PER_TURN} ms target")  # fmt: skip
        if vllm_url:
            await vllm_bench(http, vllm_url, vllm_model, quick)


async def vllm_bench(http: httpx.AsyncClient, url: str, model: str, quick: bool) -> None:
    """Rollout generation tokens/s against vLLM vs the same prompts sent to vLLM directly."""
    policy = PolicyClient(http=http, base_url=url, model=model)
    concurrency, episodes = 8, (8 if quick else 32)
    single = EnvironmentSpec.model_validate({**SPEC.model_dump(exclude={"id"}), "task": SPEC.task})
    backend = InProcessEpisodes()
    sampling = SamplingParams(max_tokens=128, temperature=0.0)
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one() -> None:
        nonlocal tokens
        async with gate:
            t = await run_episode(
                single, policy=policy, episodes=backend, sampling=sampling,
                limits=EpisodeLimits(max_turns=1),
            )  # fmt: skip
        if t.failure_reason:
            raise RuntimeError(t.failure_reason)
        tokens += sum(t.loss_mask or [])

    await one()
    tokens = 0
    wall = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(episodes)))
    rollout_tps = tokens / (time.perf_counter() - wall)
    body = {"model": model, "messages": [{"role": "user", "content": single.task}],
            "tools": [TOOL.to_openai()], "tool_choice": "auto", "max_tokens": 128,
            "temperature": 0.0, "logprobs": True, "return_token_ids": True}  # fmt: skip
    direct = await baseline_run(http, url, model, concurrency, episodes, [body])
    direct_tps = direct["tokens"] / direct["wall"]
    ratio = rollout_tps / direct_tps
    verdict = "meets" if ratio >= TARGET_VLLM_RATIO else "MISSES"
    print(f"\nvLLM at {url} ({model}), {concurrency} concurrent, {episodes} episodes of one call:")
    print("| path | generated tokens/s |\n|---|---:|")
    print(f"| rollout (run_episode) | {rollout_tps:,.1f} |")
    print(f"| direct POSTs (baseline) | {direct_tps:,.1f} |")
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
    args = parser.parse_args()
    if importlib.util.find_spec("sniffio") is None:
        # httpcore tries `import sniffio` for every request; absent, each try searches all of
        # sys.path again (~0.3 ms). A None entry makes it fail at once, with the same outcome.
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    asyncio.run(bench(args.quick, args.turns, args.vllm_url, args.vllm_model))


if __name__ == "__main__":
    main()
