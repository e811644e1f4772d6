"""Data-parallel GRPO: N processes under ``torch.distributed.run``, DDP through accelerate.

Rank 0 is the run: it reads the stream, forms the batch, checkpoints, acks and publishes.
For every step it sends the whole batch (token ids, masks, rewards as JSON) to the other
ranks; each rank computes the group advantages and the batch's policy-token count itself,
trains on its share of the sequences, and DDP averages the gradients in one all-reduce, so
every rank takes the same optimizer step and the weights stay equal without being sent.
While rank 0 waits for data it sends a heartbeat every ``heartbeat_s``, so a waiting rank
fails only when rank 0 is really gone (``collective_timeout_s``).

accelerate picks the backend from the environment ``torch.distributed.run`` sets: gloo when
the processes have no GPU, nccl with one GPU per process.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator  # type: ignore[import-untyped]
from accelerate.utils import InitProcessGroupKwargs  # type: ignore[import-untyped]

from astra_trainer.grpo.encoding import EncodedTrajectory

logger = logging.getLogger(__name__)


class DataParallel:
    """This process's place in a data-parallel run, and the collectives the run uses."""

    def __init__(self, collective_timeout_s: float) -> None:
        # accelerate treats CPU processes as distributed only when told they are CPU ones.
        cpu = not torch.cuda.is_available()
        init = InitProcessGroupKwargs(
            backend="gloo" if cpu else "nccl", timeout=timedelta(seconds=collective_timeout_s)
        )
        self.accelerator = Accelerator(cpu=cpu, kwargs_handlers=[init])
        self.rank: int = self.accelerator.process_index
        self.world_size: int = self.accelerator.num_processes
        self.device = self.accelerator.device
        self._last_sent = time.monotonic()
        self._module: torch.nn.Module | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that reads, checkpoints, acks and publishes."""
        return self.rank == 0

    def wrap(self, policy: torch.nn.Module) -> None:
        """Make ``policy`` (``step.PolicyLogprobs`` of the model) a DDP module (``module``):
        its backward all-reduces the gradients. The model must be on ``device`` already; the
        wrapper shares its weights, so the optimizer and checkpoints keep using the model."""
        self._module = self.accelerator.prepare_model(policy, device_placement=False)

    @property
    def module(self) -> torch.nn.Module:
        """The DDP module of ``wrap``: forward(input_ids, attention, mask) -> logprobs."""
        if self._module is None:
            raise RuntimeError("wrap() the model first")
        return self._module

    def share(self, count: int) -> list[int]:
        """Indices of this rank's sequences among ``count``: every ``world_size``-th one."""
        return list(range(self.rank, count, self.world_size))

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed element-wise over all ranks (float64)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu().tolist()]

    # -- rank 0 → the others ------------------------------------------------------------------

    def send_step(self, groups: Sequence[Sequence[EncodedTrajectory]], pad_token_id: int) -> None:
        """Rank 0: tell the others to train on ``groups`` (call ``grpo_step`` right after)."""
        self._send(
            {
                "command": "step",
                "pad_token_id": pad_token_id,
                "groups": [[asdict(t) for t in group] for group in groups],
            }
        )

    def send_heartbeat_if_due(self, every_s: float) -> None:
        """Rank 0: tell waiting ranks it is alive when nothing was sent for ``every_s``."""
        if time.monotonic() - self._last_sent >= every_s:
            self._send({"command": "idle"})

    def send_stop(self) -> None:
        """Rank 0: the run is over; the others exit."""
        self._send({"command": "stop"})

    def receive(self) -> dict[str, Any]:
        """Ranks > 0: the next command from rank 0."""
        return self._broadcast(None)

    def _send(self, payload: dict[str, Any]) -> None:
        self._broadcast(payload)
        self._last_sent = time.monotonic()

    def _broadcast(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        # JSON bytes in a uint8 tensor: no pickle between processes, and nccl can carry it.
        if self.is_main:
            data = json.dumps(payload).encode()
            size = torch.tensor([len(data)], dtype=torch.long, device=self.device)
        else:
            size = torch.zeros(1, dtype=torch.long, device=self.device)
        dist.broadcast(size, src=0)
        if self.is_main:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        dist.broadcast(buffer, src=0)
        message: dict[str, Any] = json.loads(buffer.cpu().numpy().tobytes())
        return message


def decode_groups(raw: list[list[dict[str, Any]]]) -> list[list[EncodedTrajectory]]:
    """The groups of a ``step`` command."""
    return [[EncodedTrajectory(**t) for t in group] for group in raw]


def ignore_stop_signals() -> None:
    """Ranks > 0 leave when rank 0 says so: a SIGTERM or Ctrl-C meant for the run must not
    kill them in the middle of the step rank 0 is finishing."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
