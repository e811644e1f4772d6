"""GRPO advantages and the clipped, token-level policy loss (no KL term, no entropy bonus).

Written here rather than taken from TRL: TRL's ``GRPOTrainer`` computes this loss only on
completions it generated itself (prompt dataset → its own rollouts), and cannot take
external multi-turn trajectories, with tool outputs inside the sequence, from a stream.
The formulas follow TRL's ``loss_type="dapo"`` (token-level normalisation over the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rewards of one group normalised within it: (R - mean) / (std + eps)."""
    if rewards.numel() < 2:
        raise ValueError("a group needs at least two rewards")
    centred = rewards - rewards.mean()
    return centred / (rewards.std(unbiased=False) + eps)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Logprob of each token given the ones before it, shape ``[batch, seq]``.

    Position 0 has no context and gets 0. Computed as logit minus logsumexp per position,
    which avoids materialising a full log-softmax over the vocabulary.
    """
    shifted = logits[:, :-1, :].float()
    targets = input_ids[:, 1:]
    picked = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logprobs = picked - torch.logsumexp(shifted, dim=-1)
    return torch.nn.functional.pad(logprobs, (1, 0), value=0.0)


@dataclass(frozen=True, slots=True)
class LossTerms:
    """The loss summed over a micro-batch's policy tokens, and diagnostics."""

    loss_sum: torch.Tensor
    """Sum of per-token losses (divide by the batch's policy tokens)."""
    clipped_tokens: int
    ratio_sum: float
    tokens: int


def clipped_policy_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
) -> LossTerms:
    """Per-token ``-min(r A, clip(r, 1-clip_low, 1+clip_high) A)`` summed over masked tokens.

    ``logprobs``, ``behaviour_logprobs`` and ``mask`` are ``[batch, seq]``; ``advantages`` is
    ``[batch]`` (one per sequence, broadcast over its tokens). r = exp(logprobs - behaviour).
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - behaviour_logprobs)
    adv = advantages.unsqueeze(-1).to(logprobs.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).to(logprobs.dtype) * mask
    return LossTerms(
        loss_sum=(per_token * mask).sum(),
        clipped_tokens=int(was_clipped.sum().item()),
        ratio_sum=float((ratio.detach() * mask).sum().item()),
        tokens=int(mask.sum().item()),
    )
