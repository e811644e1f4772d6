"""The embedded policy server's speed in bfloat16 and in float32, on this machine's CPU.

Starts the embedded policy server (``PolicyServer``: vLLM's OpenAI server from ``.venv-vllm``,
as ``astra up`` runs it) on SmolLM2-135M once per dtype, warms it with 2 requests, then sends
``--requests`` concurrent tool-calling chat requests (8 tools, ~1,050 prompt tokens,
``--new-tokens`` generated each, EOS ignored so both dtypes generate the same count). Prints
the wall time and generated tokens/s per dtype, their ratio, and what ``cpu_dtype()`` picks.

    .venv/bin/python bench/policy_dtype.py                 # 32 requests of 128 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from astra_rollout.policy_server import PolicyServer, PolicyServerSettings, cpu_dtype
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
    settings = PolicyServerSettings(
        venv=VENV, model_dir=model, served_model_name="policy", port=0, dtype=dtype,
        max_model_len=8192, log_path=logs / f"vllm-{dtype}.log",
    )  # fmt: skip
    with PolicyServer(settings) as server:  # astra up's server: same command and environment
        url = server.base_url.removesuffix("/v1")
        async with httpx.AsyncClient() as client:
            await load(client, url, 2, 16)
            seconds, generated = await load(client, url, args.requests, args.new_tokens)
    rate = generated / seconds
    print(f"{dtype:>9}: {args.requests} requests in {seconds:6.1f} s, {rate:6.1f} tokens/s")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
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
