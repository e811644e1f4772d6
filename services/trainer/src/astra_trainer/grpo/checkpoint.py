"""Checkpoints of policy versions, and the record of what each one was trained on.

A checkpoint is a model folder vLLM and transformers load directly (weights, config,
tokenizer with the serving chat template), plus the AdamW state and ``trainer_state.json``
naming the stream records that step trained on. It is written in a hidden temporary folder
and renamed into place in one step, so after a crash a checkpoint either exists whole or not
at all. Stream entries are acknowledged only after that rename: on restart, entries still
pending whose records a checkpoint lists were trained already and are acknowledged without
training again; the others are trained. Old checkpoints lose their weights (``keep``), never
their ``trainer_state.json``: the folder list is the run's training ledger.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from astra_trainer.models import CHAT_TEMPLATE
from astra_trainer.run_files import write_json_atomic

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
_PREFIX = "v"


def _now() -> datetime:
    return datetime.now(UTC)


class CheckpointState(BaseModel):
    """What ``trainer_state.json`` records about one policy version."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)
    base_model: str
    record_ids: list[str] = Field(description="Stream records this step trained on.")
    loss: float | None = None
    weights_kept: bool = True
    created_at: datetime = Field(default_factory=_now)


class CheckpointStore:
    """Checkpoint folders ``<root>/v000001`` …, one per policy version."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = root
        self.keep = keep

    def folder(self, version: int) -> Path:
        """Where ``version`` is (or would be) stored."""
        return self.root / f"{_PREFIX}{version:06d}"

    def states(self) -> list[CheckpointState]:
        """Every checkpoint's state, oldest first (leftover temporary folders ignored)."""
        states: list[CheckpointState] = []
        if not self.root.is_dir():
            return states
        for folder in sorted(self.root.glob(f"{_PREFIX}[0-9]*")):
            path = folder / STATE_FILE
            if path.is_file():
                states.append(CheckpointState.model_validate_json(path.read_text()))
        return states

    def latest(self) -> CheckpointState | None:
        """The newest checkpoint, or None before the first step."""
        states = self.states()
        return states[-1] if states else None

    def trained_record_ids(self, last: int = 16) -> set[str]:
        """Records trained by the ``last`` newest checkpoints (enough: only the newest step
        can have entries still unacknowledged)."""
        return {rid for state in self.states()[-last:] for rid in state.record_ids}

    def save(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        optimizer: torch.optim.Optimizer | None,
        state: CheckpointState,
    ) -> Path:
        """Write ``state.version`` whole, or not at all; then drop weights of old versions.

        A LoRA model is written merged (what the policy server loads), its adapter beside."""
        target = self.folder(state.version)
        if target.exists():
            raise FileExistsError(f"checkpoint {target} exists already")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            if getattr(model, "peft_config", None) is not None:  # LoRA (peft imported late: slow)
                from astra_trainer.grpo.lora import save_merged

                save_merged(model, staging)  # type: ignore[arg-type]
            else:
                model.save_pretrained(staging)
            template = tokenizer.chat_template
            tokenizer.chat_template = CHAT_TEMPLATE
            try:
                tokenizer.save_pretrained(staging)
            finally:
                tokenizer.chat_template = template
            if optimizer is not None:
                torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
            (staging / STATE_FILE).write_text(state.model_dump_json(indent=2))
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._prune()
        return target

    def _prune(self) -> None:
        folders = sorted(self.root.glob(f"{_PREFIX}[0-9]*"))
        for folder in folders[: -self.keep]:
            state_path = folder / STATE_FILE
            state = CheckpointState.model_validate_json(state_path.read_text())
            if not state.weights_kept:
                continue
            for item in folder.iterdir():
                if item.name == STATE_FILE:
                    continue
                if item.is_dir():
                    shutil.rmtree(item)
                else:
                    item.unlink()
            state.weights_kept = False
            write_json_atomic(state_path, state.model_dump(mode="json"))
        for leftover in self.root.glob(".tmp-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)


def read_state(folder: Path) -> CheckpointState:
    """The state of the checkpoint in ``folder``."""
    return CheckpointState.model_validate(json.loads((folder / STATE_FILE).read_text()))
