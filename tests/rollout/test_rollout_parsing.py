"""Reading policy replies: ``<tool_call>`` text, chat-completion bodies, token recording."""

from __future__ import annotations

import json
import math

import pytest

from astra_rollout.policy import NONFINITE_LOGPROB, PolicyError, parse_completion
from astra_rollout.tokens import TokenLedger
from astra_rollout.tool_call_text import parse_tool_call_text


def test_tool_call_blocks_are_split_from_prose() -> None:
    text = (
        'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": "{\\"y\\": \\"z\\"}"}</tool_call>'
        '<tool_call>{"name": "c", "arguments": {}'  # unterminated, and bad JSON
    )
    prose, calls = parse_tool_call_text(text)
    assert prose == "Sure."
    assert [(c.name, c.error is None) for c in calls] == [("a", True), ("b", True), ("", False)]
    assert json.loads(calls[0].arguments) == {"x": 1}
    assert json.loads(calls[1].arguments) == {"y": "z"}
    assert calls[2].error is not None
    assert "not valid JSON" in calls[2].error


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"arguments": {}}', "no string 'name'"),
        ('{"name": "f", "arguments": [1]}', "arguments of f must be a JSON object"),
        ('{"name": "f", "arguments": "{oops"}', "arguments of f are not valid JSON"),
    ],
)
def test_unreadable_blocks_say_why(block: str, error: str) -> None:
    _, [call] = parse_tool_call_text(f"<tool_call>{block}</tool_call>")
    assert call.error is not None
    assert error in call.error


def test_completion_with_vllm_token_fields() -> None:
    body = {
        "choices": [
            {
                "message": {"role": "assistant", "content": "hi", "tool_calls": []},
                "finish_reason": "stop",
                "token_ids": [5, 6],
                "logprobs": {"content": [{"logprob": -0.25}, {"logprob": -math.inf}]},
            }
        ],
        "prompt_token_ids": [1, 2, 3],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    completion = parse_completion(body, turn=0)
    assert completion.message.content == "hi"
    assert completion.message.tool_calls is None
    assert completion.prompt_token_ids == [1, 2, 3]
    assert completion.completion_token_ids == [5, 6]
    assert completion.logprobs == [-0.25, NONFINITE_LOGPROB]


@pytest.mark.parametrize(
    ("prompt_ids", "kept"),
    [([1, 2, 3], [1, 2, 3]), ([], []), ([1, "2"], None), ([1, 2.0], None), ("1 2", None)],
)
def test_token_arrays_are_kept_only_when_all_ints(prompt_ids: object, kept: object) -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "prompt_token_ids": prompt_ids,
    }
    assert parse_completion(body, turn=0).prompt_token_ids == kept


def test_completion_without_choices_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="no choices"):
        parse_completion({"choices": []}, turn=0)


def test_ledger_masks_policy_tokens_and_keeps_context_between() -> None:
    ledger = TokenLedger()
    ledger.add_turn([1, 2], [3, 4], [-0.1, -0.2])
    ledger.add_turn([1, 2, 3, 4, 9], [5], [-0.3])
    assert ledger.usable
    assert ledger.token_ids == [1, 2, 3, 4, 9, 5]
    assert ledger.loss_mask == [0, 0, 1, 1, 0, 1]
    assert ledger.logprobs == [0.0, 0.0, -0.1, -0.2, 0.0, -0.3]


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (([1, 2, 3, 7], [5], [-0.3]), "turn 2: the prompt does not extend"),
        (([1, 2, 3, 4], [5, 6], [-0.3]), "2 completion tokens but 1 logprobs"),
        ((None, [5], [-0.3]), "no token ids"),
    ],
)
def test_ledger_gives_up_with_a_reason(
    second: tuple[list[int] | None, list[int], list[float]], reason: str
) -> None:
    ledger = TokenLedger()
    ledger.add_turn([1, 2], [3, 4], [-0.1, -0.2])
    ledger.add_turn(*second)
    assert not ledger.usable
    assert ledger.failure is not None
    assert reason in ledger.failure
