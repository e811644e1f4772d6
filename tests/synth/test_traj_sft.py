"""A gold dataset, exported and loaded by `datasets`, trains for 2 steps with TRL's SFTTrainer
on the local SmolLM2 model with assistant-only loss (real model, CPU)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import datasets  # type: ignore[import-untyped]
import pytest
import torch
from test_traj_gold import envhost_with, needs_sandbox
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from astra_envhost.settings import EnvhostSettings
from astra_synth.procedural import generate_environments
from astra_synth.trajectories import gold_dataset
from astra_trainer.models import TRAINING_CHAT_TEMPLATE, ModelStore

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = REPO_ROOT / ".pytest_cache" / "d" / "astra-trainer-models"  # shared with trainer

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600), needs_sandbox]


async def test_exported_gold_dataset_trains_with_sft_trainer(
    envhost_settings: Callable[..., EnvhostSettings], tmp_path: Path
) -> None:
    specs = generate_environments(4, 71, hops=[1, 2])
    async with envhost_with(envhost_settings(), *specs) as base:
        manifest = await gold_dataset(specs, envhost_url=base, out_dir=tmp_path / "data")
    assert manifest.stats.records == len(specs)

    dataset = datasets.load_dataset(
        str(tmp_path / "data"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert set(dataset.column_names) >= {"messages", "tools"}
    assert isinstance(dataset[0]["tools"], str)  # parsed by TRL, not merged by datasets
    for message in dataset[0]["messages"]:
        for call in message["tool_calls"] or []:
            assert isinstance(json.loads(call["function"]["arguments"]), dict)

    folder = ModelStore(MODEL_CACHE).ensure_default()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TRAINING_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=1,
        learning_rate=1e-4,
        assistant_only_loss=True,
        max_length=2048,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    # assistant-only loss: TRL turned the assistant mask into labels (-100 elsewhere)
    assert isinstance(trainer.train_dataset, datasets.Dataset)
    sample = trainer.train_dataset[0]
    trained = [
        t for t, label in zip(sample["input_ids"], sample["labels"], strict=True) if label != -100
    ]
    assert 0 < len(trained) < len(sample["input_ids"])
    assert "<tool_call>" in tokenizer.decode(trained)  # the calls are what it learns
    assert "<tools>" not in tokenizer.decode(trained)  # not the system prompt
    assert "<tool_response>" not in tokenizer.decode(trained)  # nor the tool results
    result = trainer.train()
    assert result.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed  # the two steps updated the weights
