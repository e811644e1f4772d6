"""LoRA GRPO: only adapters train; checkpoints hold merged weights a plain loader serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from trainer_support import text_only_group

from astra_trainer.grpo.checkpoint import CheckpointState, CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.encoding import encode_trajectory
from astra_trainer.grpo.lora import ADAPTER_DIR
from astra_trainer.grpo.runner import load_policy
from astra_trainer.grpo.step import grpo_step, policy_token_logprobs
from astra_trainer.models import ModelStore


def _logprobs(model: Any, encoded: Any) -> torch.Tensor:
    ids = torch.tensor([encoded.input_ids])
    mask = torch.tensor([encoded.loss_mask])
    model.eval()
    with torch.no_grad():
        return policy_token_logprobs(model, ids, torch.ones_like(ids), mask)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_lora_step_trains_adapters_only_and_checkpoints_merged_weights(
    default_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    config = GRPOConfig(
        run_dir=tmp_path, base_model=str(default_model_dir), lora_rank=8, learning_rate=1e-3
    )
    store = CheckpointStore(tmp_path / "checkpoints")
    models = ModelStore(tmp_path / "models")
    _, _, model, optimizer, tokenizer = load_policy(config, models, store)
    better, worse = (encode_trajectory(t, tokenizer, 2048) for t in text_only_group("lora", 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all(".lora_" in n for n in trainable)

    grpo_step(
        model, optimizer, [[better, worse]], clip_low=0.2, clip_high=0.2,
        max_grad_norm=1.0, micro_batch_size=2, pad_token_id=0,
    )  # fmt: skip
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed  # B starts at 0: the step moved the adapters
    assert changed <= trainable  # and nothing else

    folder = store.save(
        model, tokenizer, optimizer, CheckpointState(version=1, base_model="b", record_ids=[])
    )
    merged = load_file(folder / "model.safetensors")
    base = load_file(default_model_dir / "model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in merged)
    assert set(merged) == set(base)
    differs = {k for k in base if not torch.equal(base[k].float(), merged[k].float())}
    assert any("q_proj" in k for k in differs)
    assert not any("embed" in k or "norm" in k for k in differs)
    assert (folder / ADAPTER_DIR / "adapter_config.json").is_file()

    # A plain loader (what vLLM reads) serves what the adapter model computes.
    served = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    expected = _logprobs(model, better)
    assert torch.allclose(_logprobs(served, better), expected, atol=1e-4)

    # Resuming loads base + adapter (not the merged weights) and continues from the same policy.
    _, version, resumed, resumed_optimizer, _ = load_policy(config, models, store)
    assert version == 1
    assert torch.allclose(_logprobs(resumed, better), expected, atol=1e-5)
    assert resumed_optimizer.state_dict()["state"]  # AdamW moments restored
