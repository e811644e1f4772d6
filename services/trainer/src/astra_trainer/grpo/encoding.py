"""A trajectory as training tokens: ids, the policy-token mask and behaviour logprobs.

Trajectories from a server that returned token ids carry them with aligned logprobs and a
loss mask (1 = a token the policy sampled): they are used as they are. Text-only ones are
rendered with the training chat template and re-tokenized, and must pass a consistency
check: at every assistant turn, the tokens of the conversation so far (with the generation
prompt) must be a prefix of the full sequence, i.e. the policy saw exactly the context it
is trained on; otherwise the trajectory is rejected rather than trained on other tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from astra_proto import Message, Trajectory
from astra_trainer.models import TRAINING_CHAT_TEMPLATE


class EncodingError(ValueError):
    """A trajectory that cannot be trained on; the message says why."""


@dataclass(frozen=True, slots=True)
class EncodedTrajectory:
    """Training view of one trajectory; all lists are aligned with ``input_ids``."""

    record_id: str
    group_id: str
    reward: float
    policy_version: int
    input_ids: list[int]
    loss_mask: list[int]
    behaviour_logprobs: list[float] | None
    """Logprob the sampling policy gave each token; None for re-tokenized text."""
    turns: int
    calls: int
    truncated_from: int | None = None
    """The trajectory's length when only its first ``max_tokens`` tokens are kept."""

    @property
    def policy_tokens(self) -> int:
        """How many tokens are trained on."""
        return sum(self.loss_mask)


def message_dict(message: Message) -> dict[str, Any]:
    """A message as the chat template reads it (arguments kept as JSON strings)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def encode_trajectory(
    trajectory: Trajectory,
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    *,
    overlong: Literal["truncate", "drop"] = "truncate",
) -> EncodedTrajectory:
    """The training view of ``trajectory``; raises ``EncodingError`` when it is unusable.

    Unusable: no reward, no group id, no policy token (within the first ``max_tokens`` when
    truncating), token ids outside the vocabulary, text whose re-tokenization fails the
    consistency check, or, with ``overlong="drop"``, longer than ``max_tokens``. With
    ``overlong="truncate"`` a longer trajectory keeps its first ``max_tokens`` tokens (ids,
    mask and behaviour logprobs cut alike; ``truncated_from`` says how long it was).
    """
    if trajectory.reward is None:
        raise EncodingError("trajectory has no reward")
    if not trajectory.group_id:
        raise EncodingError("trajectory has no group_id: GRPO needs groups")
    if trajectory.text_only:
        input_ids, loss_mask = retokenize(trajectory, tokenizer)
        behaviour: list[float] | None = None
    else:
        input_ids = list(trajectory.token_ids or [])
        loss_mask = list(trajectory.loss_mask or [])
        behaviour = list(trajectory.logprobs or [])
        vocab = len(tokenizer)
        if any(not 0 <= token < vocab for token in input_ids):
            raise EncodingError(f"token ids outside the vocabulary of {vocab}")
    truncated_from = None
    if len(input_ids) > max_tokens:
        if overlong == "drop":
            raise EncodingError(f"{len(input_ids)} tokens, more than max_tokens={max_tokens}")
        truncated_from = len(input_ids)
        input_ids, loss_mask = input_ids[:max_tokens], loss_mask[:max_tokens]
        behaviour = None if behaviour is None else behaviour[:max_tokens]
    if loss_mask and loss_mask[0]:
        loss_mask[0] = 0  # the first token has no context to be predicted from
    if not any(loss_mask):
        raise EncodingError("no policy tokens to train on")
    calls = sum(len(m.tool_calls or []) for m in trajectory.messages)
    return EncodedTrajectory(
        record_id=trajectory.id,
        group_id=trajectory.group_id,
        reward=trajectory.reward.f1,
        policy_version=trajectory.policy_version,
        input_ids=input_ids,
        loss_mask=loss_mask,
        behaviour_logprobs=behaviour,
        turns=trajectory.turns,
        calls=calls,
        truncated_from=truncated_from,
    )


def _tokens(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[Any, Any] | Callable[..., Any]] | None,
    **kwargs: Any,
) -> Any:
    return tokenizer.apply_chat_template(
        messages,
        tools=tools,
        chat_template=TRAINING_CHAT_TEMPLATE,
        tokenize=True,
        return_dict=True,
        **kwargs,
    )


def retokenize(
    trajectory: Trajectory, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    """Token ids and policy-token mask of a text-only trajectory, consistency-checked.

    The mask covers each assistant turn from the end of its generation prompt through its
    end-of-turn token (what the policy generated); the newline the template adds after the
    end-of-turn token, prompts and tool outputs stay 0.
    """
    messages = [message_dict(m) for m in trajectory.messages]
    tools: list[dict[Any, Any] | Callable[..., Any]] | None = [
        t.to_openai() for t in trajectory.tools
    ] or None
    full = _tokens(tokenizer, messages, tools)
    input_ids: list[int] = list(full["input_ids"])
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    loss_mask = [0] * len(input_ids)
    assistant_turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not assistant_turns:
        raise EncodingError("no assistant turn to train on")
    for turn, index in enumerate(assistant_turns):
        prompt = list(
            _tokens(tokenizer, messages[:index], tools, add_generation_prompt=True)["input_ids"]
        )
        if input_ids[: len(prompt)] != prompt:
            at = next(
                (i for i, (a, b) in enumerate(zip(prompt, input_ids, strict=False)) if a != b),
                min(len(prompt), len(input_ids)),
            )
            raise EncodingError(
                f"re-tokenization is inconsistent at assistant turn {turn}: the prompt the "
                f"policy saw differs from the training sequence at token {at}"
            )
        position = len(prompt)
        while position < len(input_ids):
            loss_mask[position] = 1
            if input_ids[position] == end_of_turn:
                break
            position += 1
        else:
            raise EncodingError(f"assistant turn {turn} has no end-of-turn token")
    rendered = tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=TRAINING_CHAT_TEMPLATE, tokenize=False
    )
    if tokenizer.decode(input_ids) != rendered:
        raise EncodingError("re-tokenized text does not decode back to the rendered text")
    return input_ids, loss_mask
