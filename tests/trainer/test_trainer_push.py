"""Weight push into a real vLLM CPU server: in-place reload from a checkpoint folder."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import torch
from trainer_support import REPO_ROOT, model_store
from transformers import AutoModelForCausalLM, AutoTokenizer

from astra.redis_server import free_port
from astra_trainer.publish import VLLMWeightReload, WeightPushError

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


async def _complete(client: httpx.AsyncClient) -> str:
    reply = await client.post(
        "/v1/completions",
        json={
            "model": "policy",
            "prompt": "The capital of France is",
            "max_tokens": 6,
            "temperature": 0,
        },
    )
    reply.raise_for_status()
    text: str = reply.json()["choices"][0]["text"]
    return text


def test_vllm_reloads_checkpoint_weights_in_place(tmp_path: Path) -> None:
    if not VLLM_PYTHON.exists():
        pytest.skip("no vLLM venv at .venv-vllm (scripts/vllm-venv.sh builds it)")
    base = model_store().ensure_default()
    changed = tmp_path / "v000001"
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".mlp." in name:
                parameter.zero_()  # a policy that visibly differs
    model.save_pretrained(changed)
    AutoTokenizer.from_pretrained(base).save_pretrained(changed)

    port = free_port()
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    log = (tmp_path / "vllm.log").open("wb")
    server = subprocess.Popen(
        [
            str(VLLM_PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(base),
            "--served-model-name",
            "policy",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            "bfloat16",
            "--max-model-len",
            "1024",
            "--enforce-eager",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_exercise(url, server, tmp_path, base, changed))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


async def _exercise(
    url: str, server: subprocess.Popen[bytes], tmp_path: Path, base: Path, changed: Path
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 100
        while True:
            assert server.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "vLLM did not become ready"
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        before = await _complete(client)
        push = VLLMWeightReload(f"{url}/v1")
        await push.push(changed)
        after = await _complete(client)
        await push.push(base)
        back = await _complete(client)
        assert after != before
        assert back == before
        with pytest.raises(WeightPushError, match="refused"):
            await push.push(tmp_path / "missing")
