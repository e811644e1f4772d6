"""Token ids, logprobs and loss mask of a multi-turn trajectory, from the server's own tokens.

The sequence is the exact one the model saw and produced: the first prompt (mask 0), then for
every turn the completion's tokens (mask 1, with their logprobs) and the part of the next
prompt that extends what came before — tool results, user turns, chat-template glue (mask 0,
logprob 0.0). This holds only when the server's tokenization of each prompt *extends* the
previous prompt plus completion; when it does not (the chat template re-renders an assistant
turn differently from what the model sampled, or BPE merges across the boundary), recording
stops and the trajectory is text-only, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenLedger:
    """Builds the aligned arrays turn by turn; ``failure`` says why they were given up."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    failure: str | None = None
    turns: int = 0

    @property
    def usable(self) -> bool:
        """Whether the arrays are complete and consistent for every turn recorded."""
        return self.failure is None and self.turns > 0

    def add_turn(
        self,
        prompt_ids: list[int] | None,
        completion_ids: list[int] | None,
        logprobs: list[float] | None,
    ) -> None:
        """Record one policy call: the prompt it was given and the tokens it produced."""
        if self.failure is not None:
            return
        turn = self.turns + 1
        if prompt_ids is None or completion_ids is None or logprobs is None:
            self.failure = f"turn {turn}: the policy server returned no token ids or logprobs"
            return
        if len(completion_ids) != len(logprobs):
            self.failure = (
                f"turn {turn}: {len(completion_ids)} completion tokens but {len(logprobs)} logprobs"
            )
            return
        seen = len(self.token_ids)
        if prompt_ids[:seen] != self.token_ids:
            pairs = zip(prompt_ids, self.token_ids, strict=False)
            at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(prompt_ids), seen))
            self.failure = (
                f"turn {turn}: the prompt does not extend the previous prompt and completion "
                f"(first difference at token {at} of {seen})"
            )
            return
        added = len(prompt_ids) - seen
        self.token_ids.extend(prompt_ids[seen:])
        self.logprobs.extend([0.0] * added)
        self.loss_mask.extend([0] * added)
        self.token_ids.extend(completion_ids)
        self.logprobs.extend(logprobs)
        self.loss_mask.extend([1] * len(completion_ids))
        self.turns = turn
