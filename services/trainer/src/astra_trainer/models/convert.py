"""Turn the SmolLM2 GGUF into a plain bf16 safetensors folder with a tool-capable template."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

from astra_trainer.models.chat_template import CHAT_TEMPLATE, RESPONSE_TEMPLATE

SAVED_DTYPE = torch.bfloat16


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Load ``gguf`` with transformers and save model, tokenizer and template into ``out_dir``.

    A GGUF-loaded model may keep a ``gguf`` quantization marker on its config (and, where the
    ``kernels`` package offers a matmul kernel, packed weights), which ``save_pretrained`` and
    TRL refuse. So the GGUF is dequantized to float32 explicitly and its weights are copied into
    a model built from the config without any marker, cast to bf16 on the way.
    """
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    # nn.Module's own `to`: transformers' override only guards quantized models (and is untyped).
    torch.nn.Module.to(model, SAVED_DTYPE)
    model.generation_config = gguf_model.generation_config
    del gguf_model

    model.save_pretrained(out_dir)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.response_template = RESPONSE_TEMPLATE
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
