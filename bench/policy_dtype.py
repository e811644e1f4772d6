"""The embedded policy server's speed in bfloat16 and in float32, on this machine's CPU.

Starts vLLM's OpenAI server (``.venv-vllm``, the options ``astra up`` uses) on SmolLM2-135M
once per dtype, warms it with 2 requests, then sends ``--requests`` concurrent tool-calling
chat requests (8 tools, ~1,050 prompt tokens, ``--new-tokens`` generated each, ignoring EOS
so every dtype generates the same count) and prints the wall time and generated tokens/s per
dtype, with the ratio, and which dtype ``cpu_dtype()`` picks here.

    .venv/bin/python bench/policy_dtype.py                 # 32 requests of 128 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from astra_rollout.policy_server import cpu_dtype
from astra_trainer.models import ModelStore

VENV = Path(__file__).resolve().parents[1] / ".venv-vllm"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "Look up a record of the catalogue by its identifier and return "
            "every field of it, with dates and owners. " * 2,
            "parameters": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "identifier"},
                    "field": {"type": "string"},
                },
                "required": ["id"],
            },
        },
    }
    for i in range(8)
]


def start(model: Path, dtype: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "4"}
    env |= {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    command = [
        str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", "policy", "--host", "127.0.0.1",
        "--port", str(port), "--dtype", dtype, "--max-model-len", "8192", "--enforce-eager",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def wait_ready(client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode}")
        try:
            if (await client.get(f"{url}/v1/models")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(1)
    raise RuntimeError("vLLM was not ready within 600 s")


async def load(client: httpx.AsyncClient, url: str, n: int, new_tokens: int) -> tuple[float, int]:
    async def one(i: int) -> int:
        body = {
            "model": "policy",
            "messages": [
                {"role": "system", "content": "You are a careful agent. Use the tools."},
                {"role": "user", "content": f"Find record R-{i}: its owner and creation date."},
            ],
            "tools": TOOLS,
            "max_tokens": new_tokens,
            "temperature": 0.7,
            "ignore_eos": True,
        }
        reply = await client.post(f"{url}/v1/chat/completions", json=body, timeout=1800)
        reply.raise_for_status()
        return int(reply.json()["usage"]["completion_tokens"])

    started = time.perf_counter()
    generated = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started, sum(generated)


async def measure(model: Path, dtype: str, args: argparse.Namespace, logs: Path) -> float:
    process = start(model, dtype, args.port, logs / f"vllm-{dtype}.log")
    url = f"http://127.0.0.1:{args.port}"
    try:
        async with httpx.AsyncClient() as client:
            await wait_ready(client, url, process)
            await load(client, url, 2, 16)
            seconds, generated = await load(client, url, args.requests, args.new_tokens)
    finally:
        process.terminate()
        process.wait(60)
    rate = generated / seconds
    print(f"{dtype:>9}: {args.requests} requests in {seconds:6.1f} s, {rate:6.1f} tokens/s")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=39111)
    args = parser.parse_args()
    model = ModelStore(Path(".astra") / "models").ensure_default()
    print(f"cpu_dtype() here: {cpu_dtype()}")
    with tempfile.TemporaryDirectory() as logs:
        rates = {
            d: asyncio.run(measure(model, d, args, Path(logs))) for d in ("bfloat16", "float32")
        }
    print(f"float32 / bfloat16: {rates['float32'] / rates['bfloat16']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
