"""LoRA for GRPO (peft): train low-rank adapters, publish merged weights.

The policy server loads plain model folders, so a checkpoint holds the *merged* weights
(base + scale * B A, computed into new tensors; the training model is left as it is) where
vLLM and transformers read them, and the adapter itself under ``adapter/`` for resuming: a
resumed run loads the base model and that adapter, never the merged weights, so training
continues from exactly the state it saved.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from transformers import PreTrainedModel

ADAPTER_DIR = "adapter"
ADAPTER_NAME = "default"


@contextlib.contextmanager
def _peft_on_transformers_5() -> Iterator[None]:
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`; only that is hushed.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def add_adapter(model: PreTrainedModel, rank: int, alpha: int) -> PeftModel:
    """``model`` with fresh LoRA adapters of ``rank`` on every linear layer but the output
    layer (B = 0: the policy is unchanged until the first step); only adapters train."""
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
    with _peft_on_transformers_5():
        return get_peft_model(model, config)


def load_adapter(model: PreTrainedModel, folder: Path) -> PeftModel:
    """``model`` (the base weights) with the trainable adapter saved in ``folder``."""
    with _peft_on_transformers_5():
        return PeftModel.from_pretrained(model, folder / ADAPTER_DIR, is_trainable=True)


def merged_state_dict(model: PeftModel) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter merged into its layer's weight, under
    the base model's own names (no ``base_layer``/``lora_`` keys); the model is unchanged."""
    base = model.get_base_model()
    state: dict[str, torch.Tensor] = {}
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        state[name.replace(".base_layer.", ".")] = tensor.detach()
    for name, module in base.named_modules():
        if isinstance(module, LoraLinear) and ADAPTER_NAME in module.lora_A:
            weight = module.get_base_layer().weight
            assert isinstance(weight, torch.Tensor)
            delta: torch.Tensor = module.get_delta_weight(ADAPTER_NAME)
            state[f"{name}.weight"] = (weight + delta.to(weight.dtype)).detach()
    return state


def save_merged(model: PeftModel, folder: Path) -> None:
    """Write the merged model to ``folder`` (as ``save_pretrained`` would) and the adapter to
    ``folder/adapter``."""
    base: Any = model.get_base_model()
    base.save_pretrained(folder, state_dict=merged_state_dict(model))
    model.save_pretrained(str(folder / ADAPTER_DIR))
