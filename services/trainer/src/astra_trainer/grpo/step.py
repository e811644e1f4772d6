"""One GRPO optimizer step over a batch of groups."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from astra_trainer.grpo.encoding import EncodedTrajectory
from astra_trainer.grpo.loss import clipped_policy_loss, group_advantages, token_logprobs

if TYPE_CHECKING:
    from astra_trainer.grpo.parallel import DataParallel


@dataclass(frozen=True, slots=True)
class StepStats:
    """What one optimizer step did."""

    loss: float
    sequences: int
    tokens: int
    """All tokens forwarded (prompts and tool outputs included)."""
    policy_tokens: int
    """Tokens the loss was computed on."""
    padded_tokens: int
    """Pad positions forwarded to fill micro-batches (computed on, then discarded)."""
    clip_fraction: float
    ratio_mean: float
    grad_norm: float
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Forwarded tokens per second of step time."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _pad(
    rows: Sequence[Sequence[float]], length: int, value: float, dtype: torch.dtype
) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def policy_token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Logprob of each policy token (``mask`` 1) given the ones before it, ``[batch, seq]``,
    0 elsewhere.

    Only the policy positions go through the output layer: the full ``[batch, seq, vocab]``
    logits (49k-word vocabulary, thousands of positions, float32) would take gigabytes that a
    multi-turn trajectory's prompts and tool outputs never need. Models without a separate
    decoder fall back to the full logits.
    """
    get_decoder = getattr(model, "get_decoder", None)
    get_head = getattr(model, "get_output_embeddings", None)
    decoder = get_decoder() if callable(get_decoder) else None
    head = get_head() if callable(get_head) else None
    if decoder is None or head is None:
        logits = model(input_ids=input_ids, attention_mask=attention).logits
        return token_logprobs(logits, input_ids) * mask
    hidden = decoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
    rows, cols = mask[:, 1:].nonzero(as_tuple=True)  # token cols + 1, predicted at cols
    picked = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    if rows.numel() == 0:
        return picked
    logits = head(hidden[rows, cols]).float()
    targets = input_ids[rows, cols + 1]
    values = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    return picked.index_put((rows, cols + 1), values)


class PolicyLogprobs(torch.nn.Module):
    """``policy_token_logprobs`` of ``model`` as a module, so DDP can wrap the whole forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return policy_token_logprobs(self.model, input_ids, attention, mask)


def grpo_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    groups: Sequence[Sequence[EncodedTrajectory]],
    *,
    clip_low: float,
    clip_high: float,
    max_grad_norm: float,
    micro_batch_size: int,
    pad_token_id: int,
    parallel: DataParallel | None = None,
) -> StepStats:
    """Forward, loss and backward over every sequence of ``groups``, then one optimizer step.

    Advantages are normalised within each group. The loss is the sum of per-token losses
    over all policy tokens of the batch divided by their count (token-level mean over the
    whole batch, not per sequence), accumulated over micro-batches of ``micro_batch_size``.
    Micro-batches hold sequences of similar length (the batch is ordered by length), so little
    compute goes to padding; the order changes no term of the loss.
    Sequences without behaviour logprobs use the current policy's (detached) as the old
    policy, so their ratio is 1 at this single update.

    With ``parallel`` (every rank calls this with the same ``groups``), this rank forwards
    only its share of the sequences through the DDP module; each rank's loss is scaled by
    the number of ranks, so DDP's gradient average equals one process's gradient over the
    whole batch. Loss and diagnostics are summed over the ranks; every rank returns them.
    """
    started = time.perf_counter()
    sequences: list[EncodedTrajectory] = []
    advantages: list[float] = []
    for group in groups:
        rewards = torch.tensor([t.reward for t in group], dtype=torch.float32)
        advantages.extend(group_advantages(rewards).tolist())
        sequences.extend(group)
    total_policy_tokens = sum(t.policy_tokens for t in sequences)
    if total_policy_tokens == 0:
        raise ValueError("the batch has no policy tokens")
    device = next(model.parameters()).device
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss_total = 0.0
    clipped = 0
    padded = 0
    ratio_sum = 0.0
    forward: torch.nn.Module = PolicyLogprobs(model)
    by_length = sorted(range(len(sequences)), key=lambda i: len(sequences[i].input_ids))
    mine = by_length
    scale = 1.0
    if parallel is not None:
        forward = parallel.module
        # Every world_size-th of the length order: ranks get similar amounts of work.
        mine = [by_length[i] for i in parallel.share(len(sequences))]
        scale = float(parallel.world_size)
        if not mine:
            # A rank without sequences still joins the all-reduce: one sequence, weight 0.
            mine, scale = [0], 0.0
    starts = range(0, len(mine), micro_batch_size)
    for start in starts:
        picked = mine[start : start + micro_batch_size]
        chunk = [sequences[i] for i in picked]
        length = max(len(t.input_ids) for t in chunk)
        padded += sum(length - len(t.input_ids) for t in chunk) if scale > 0 else 0
        input_ids = _pad([t.input_ids for t in chunk], length, pad_token_id, torch.long)
        attention = _pad([[1] * len(t.input_ids) for t in chunk], length, 0, torch.long)
        mask = _pad([t.loss_mask for t in chunk], length, 0, torch.long)
        input_ids, attention, mask = input_ids.to(device), attention.to(device), mask.to(device)
        # DDP all-reduces once, in the backward of a rank's last micro-batch.
        sync = (
            parallel.accelerator.no_sync(forward)
            if parallel is not None and start != starts[-1]
            else contextlib.nullcontext()
        )
        with sync:
            logprobs = forward(input_ids, attention, mask)
            behaviour = logprobs.detach().clone()
            for row, trajectory in enumerate(chunk):
                if trajectory.behaviour_logprobs is not None:
                    values = torch.tensor(trajectory.behaviour_logprobs, dtype=behaviour.dtype)
                    behaviour[row, : len(values)] = values.to(device)
            chunk_adv = torch.tensor([advantages[i] for i in picked], device=device)
            terms = clipped_policy_loss(
                logprobs, behaviour, chunk_adv, mask, clip_low=clip_low, clip_high=clip_high
            )
            weight = scale / total_policy_tokens
            (terms.loss_sum * weight).backward()  # type: ignore[no-untyped-call]
        if scale > 0:
            loss_total += float(terms.loss_sum.item())
            clipped += terms.clipped_tokens
            ratio_sum += terms.ratio_sum
    if parallel is not None:
        loss_total, clipped_sum, ratio_sum, padded_sum = parallel.sum(
            [loss_total, clipped, ratio_sum, padded]
        )
        clipped, padded = round(clipped_sum), round(padded_sum)
    loss = loss_total / total_policy_tokens
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        # Checked before stepping: a non-finite update would ruin the weights for good.
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(f"GRPO loss or gradient is not finite: {loss}, {grad_norm}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(
        loss=loss,
        sequences=len(sequences),
        tokens=sum(len(t.input_ids) for t in sequences),
        policy_tokens=total_policy_tokens,
        padded_tokens=padded,
        clip_fraction=clipped / total_policy_tokens,
        ratio_mean=ratio_sum / total_policy_tokens,
        grad_norm=grad_norm,
        seconds=time.perf_counter() - started,
    )
