"""Supervised fine-tuning on exported tool-use datasets, with TRL's ``SFTTrainer``.

Loss on assistant tokens only (content and tool calls; prompts and tool outputs masked), via
the training variant of the tool-capable chat template. Checkpoints every ``save_steps``; a
final model in ``<run_dir>/final`` ready for vLLM (bf16, serving chat template); one metrics
record per logged step in ``<run_dir>/metrics.jsonl``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from astra_proto.api.trainer import RunStatus, SFTOptions
from astra_trainer.models import CHAT_TEMPLATE, TRAINING_CHAT_TEMPLATE, ModelStore
from astra_trainer.run_files import (
    CONFIG_FILE,
    append_metrics,
    write_json_atomic,
    write_status,
)
from astra_trainer.sft_data import load_sft_dataset

logger = logging.getLogger(__name__)

FINAL_DIR = "final"


class SFTRunConfig(SFTOptions):
    """One SFT run: the knobs a request may set (``SFTOptions``, whose defaults follow the
    paper's recipe scaled to a CPU-sized model) and its run directory."""

    run_dir: Path = Field(description="Where checkpoints, metrics and the final model go.")


class SFTResult(BaseModel):
    """What a finished SFT run produced."""

    run_dir: Path
    final_model: Path
    steps: int
    train_loss: float
    seconds: float
    tokens_per_second: float


class _MetricsLog(TrainerCallback):
    """Appends TRL's log records to the run's metrics file and keeps status.json current."""

    def __init__(self, run_dir: Path, status: RunStatus) -> None:
        self.run_dir = run_dir
        self.status = status

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        record = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
        append_metrics(self.run_dir, {"step": state.global_step, **record})
        self.status.step = state.global_step
        write_status(self.run_dir, self.status)


def load_base(base_model: str, model_store: ModelStore) -> Path:
    """The base model folder for ``base_model`` (a store name or a local folder)."""
    return model_store.resolve(base_model)


def run_sft(config: SFTRunConfig, model_store: ModelStore, run_id: str | None = None) -> SFTResult:
    """Train ``config.base_model`` on ``config.dataset``; returns where the final model is.

    Raises ``DatasetFormatError`` for a dataset that cannot be trained on and
    ``ModelStoreError`` for a base model that cannot be had, before any training.
    """
    run_dir = config.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CONFIG_FILE, {"kind": "sft", **config.model_dump(mode="json")})
    status = RunStatus(run_id=run_id or run_dir.name, kind="sft", state="running", pid=os.getpid())
    write_status(run_dir, status)
    try:
        result = _train(config, model_store, run_dir, status)
    except BaseException as exc:
        status.state = "failed"
        status.error = f"{type(exc).__name__}: {exc}"
        logger.error("SFT run %s failed: %s", status.run_id, status.error, exc_info=exc)
        write_status(run_dir, status)
        raise
    status.state = "finished"
    status.step = result.steps
    status.checkpoint = str(result.final_model)
    write_status(run_dir, status)
    return result


def _train(
    config: SFTRunConfig, model_store: ModelStore, run_dir: Path, status: RunStatus
) -> SFTResult:
    dataset = load_sft_dataset(config.dataset)
    base = load_base(config.base_model, model_store)
    tokenizer = AutoTokenizer.from_pretrained(base)
    # TRL recognises training templates by exact text; ours carries {% generation %} marks.
    tokenizer.chat_template = TRAINING_CHAT_TEMPLATE
    # float32 master weights: bf16 optimizer updates lose most small steps on CPU.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(run_dir),
        max_steps=config.max_steps,
        num_train_epochs=config.num_epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the steps
        max_length=config.max_length,
        assistant_only_loss=True,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=config.seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        # TRL turns bf16 autocast on by default; on CPUs without bf16 units it is ~10x slower.
        bf16=torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        # Recomputing activations saves memory a 135M model does not need; it costs time.
        activation_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[_MetricsLog(run_dir, status)],
    )
    train_rows: Any = trainer.train_dataset
    tokens = sum(len(row["input_ids"]) for row in train_rows)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    epochs_seen = output.global_step * config.batch_size * config.gradient_accumulation_steps
    trained_tokens = tokens * epochs_seen / max(len(train_rows), 1)

    final = run_dir / FINAL_DIR
    torch.nn.Module.to(model, torch.bfloat16)  # trainer.model is this model
    model.save_pretrained(final)
    tokenizer.chat_template = CHAT_TEMPLATE  # the serving template renders the same text
    tokenizer.save_pretrained(final)
    result = SFTResult(
        run_dir=run_dir,
        final_model=final,
        steps=output.global_step,
        train_loss=float(output.training_loss),
        seconds=seconds,
        tokens_per_second=trained_tokens / seconds if seconds > 0 else 0.0,
    )
    append_metrics(run_dir, {"event": "finished", **result.model_dump(mode="json")})
    logger.info("SFT finished: %d steps, loss %.4f", result.steps, result.train_loss)
    return result
