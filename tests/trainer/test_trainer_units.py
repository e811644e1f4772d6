"""GRPO pieces on their own: groups and batch filling, advantages and loss, encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_support import model_store, text_only_group
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from astra_proto import Message
from astra_trainer.grpo.batching import GroupBuffer, Member
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.encoding import EncodingError, encode_trajectory
from astra_trainer.grpo.loss import clipped_policy_loss, group_advantages, token_logprobs


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _buffer(clock: FakeClock | None = None, **kw: float) -> GroupBuffer[str]:
    values: dict[str, float] = {
        "group_size": 2,
        "batch_groups": 2,
        "buffer_groups": 1,
        "delta": 0.0,
        "max_staleness": 1,
        "group_timeout_s": 10.0,
    } | kw
    return GroupBuffer(
        group_size=int(values["group_size"]),
        batch_groups=int(values["batch_groups"]),
        buffer_groups=int(values["buffer_groups"]),
        delta=values["delta"],
        max_staleness=int(values["max_staleness"]),
        group_timeout_s=values["group_timeout_s"],
        clock=clock or FakeClock(),
    )


def _member(rid: str, reward: float, version: int = 0) -> Member[str]:
    return Member(rid, reward, version, rid)


def test_adaptive_batch_filling_keeps_extras_and_drops_flat_groups() -> None:
    buffer = _buffer()
    assert buffer.add("a", _member("a1", 0.0)) == []
    assert buffer.add("a", _member("a2", 1.0)) == []
    dropped = buffer.add("f", _member("f1", 0.5)) + buffer.add("f", _member("f2", 0.5))
    assert [(d.reason, len(d.members)) for d in dropped] == [("no_reward_variance", 2)]
    assert buffer.take_batch(0) == ([], [])  # one valid group < batch of two
    for g in "bc":
        buffer.add(g, _member(f"{g}1", 0.0))
        buffer.add(g, _member(f"{g}2", 1.0))
    assert not buffer.wants_more()  # batch (2) + buffer (1) ready: stop reading
    batch, stale = buffer.take_batch(0)
    assert [g.group_id for g in batch] == ["a", "b"]
    assert stale == []
    assert buffer.ready_groups == 1  # the extra waits for the next batch
    assert buffer.stats.fill_ratio == pytest.approx(3 / 4)


def test_duplicates_stale_groups_and_timeouts() -> None:
    clock = FakeClock()
    buffer = _buffer(clock)
    buffer.add("a", _member("a1", 0.0, version=0))
    assert [d.reason for d in buffer.add("a", _member("a1", 0.0))] == ["duplicate"]
    buffer.add("a", _member("a2", 1.0, version=0))
    buffer.add("b", _member("b1", 0.0, version=3))
    buffer.add("b", _member("b2", 1.0, version=3))
    batch, stale = buffer.take_batch(current_version=3)  # a: version 0 < 3 - 1
    assert batch == []
    assert [(d.reason, [m.record_id for m in d.members]) for d in stale] == [
        ("stale", ["a1", "a2"])
    ]
    buffer.add("c", _member("c1", 0.0))
    buffer.add("d", _member("d1", 0.0))
    clock.now = 11.0
    assert [d.reason for d in buffer.expire()] == ["incomplete", "incomplete"]
    assert buffer.open_groups == 0


def test_buffer_must_be_smaller_than_batch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smaller than batch_groups"):
        GRPOConfig(run_dir=tmp_path, batch_groups=2, buffer_groups=2)
    with pytest.raises(ValueError, match="smaller than batch_groups"):
        _buffer(batch_groups=1, buffer_groups=1)


def test_group_advantages_are_normalised_within_the_group() -> None:
    adv = group_advantages(torch.tensor([0.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, 1.0, -1.0]), atol=1e-4)
    assert torch.allclose(group_advantages(torch.tensor([0.5, 0.5])), torch.zeros(2))
    with pytest.raises(ValueError, match="at least two"):
        group_advantages(torch.tensor([1.0]))


def test_token_logprobs_match_log_softmax() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    ids = torch.randint(0, 11, (2, 5))
    got = token_logprobs(logits, ids)
    expected = torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert torch.allclose(got[:, 1:], expected, atol=1e-5)
    assert torch.all(got[:, 0] == 0)


def test_clipped_loss_is_token_level_and_clips_the_ratio() -> None:
    logprobs = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    behaviour = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.5, 0.5, 0.5]]))  # ratio 2 at [0,1]
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    terms = clipped_policy_loss(
        logprobs, behaviour, torch.tensor([1.0, -1.0]), mask, clip_low=0.2, clip_high=0.2
    )
    # Row 0: -(1*1) + -(min(2, 1.2)*1) ; row 1: -(-1*1); masked token ignored.
    assert terms.loss_sum.item() == pytest.approx(-1.0 - 1.2 + 1.0)
    assert terms.tokens == 3
    assert terms.clipped_tokens == 1


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_store().ensure_default())


def test_text_only_trajectory_masks_only_policy_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    trajectory = text_only_group("enc", 1)[0]
    encoded = encode_trajectory(trajectory, tokenizer, max_tokens=2048)
    trained = tokenizer.decode(
        [t for t, m in zip(encoded.input_ids, encoded.loss_mask, strict=True) if m]
    )
    assert trained == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>It is 18 °C in Paris.<|im_end|>"
    )
    assert encoded.behaviour_logprobs is None
    assert encoded.calls == 1
    assert encoded.truncated_from is None
    with pytest.raises(EncodingError, match="max_tokens"):
        encode_trajectory(trajectory, tokenizer, max_tokens=32, overlong="drop")
    # Truncated to 32 tokens, nothing the policy said is left: unusable all the same.
    with pytest.raises(EncodingError, match="no policy tokens"):
        encode_trajectory(trajectory, tokenizer, max_tokens=32)


def test_an_overlong_trajectory_is_trained_on_its_first_max_tokens() -> None:
    trajectory = text_only_group("long", 1)[0].model_copy(
        update={
            "text_only": False,
            "token_ids": list(range(100, 112)),
            "logprobs": [-0.1 * i for i in range(12)],
            "loss_mask": [0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1],
        }
    )
    tokenizer = _VocabOnly(1000)
    kept = encode_trajectory(trajectory, tokenizer, max_tokens=8)  # type: ignore[arg-type]
    assert kept.truncated_from == 12
    assert kept.input_ids == list(range(100, 108))
    assert kept.loss_mask == [0, 0, 0, 0, 1, 1, 1, 0]
    assert kept.behaviour_logprobs == pytest.approx([-0.1 * i for i in range(8)])
    assert kept.reward == trajectory.reward.f1  # the whole trajectory's reward, as its group's
    with pytest.raises(EncodingError, match="12 tokens, more than max_tokens=8"):
        encode_trajectory(trajectory, tokenizer, max_tokens=8, overlong="drop")  # type: ignore[arg-type]


class _VocabOnly:
    """A stand-in tokenizer for token-id trajectories: encoding asks only its length."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def test_inconsistent_retokenization_is_rejected(tokenizer: PreTrainedTokenizerBase) -> None:
    trajectory = text_only_group("bad", 1)[0]
    # An answer opening with newlines merges with the generation prompt's newline into one
    # token: the full sequence no longer starts with the prompt the policy was given.
    messages = [*trajectory.messages[:-1], Message(role="assistant", content="\n\n\nSunny")]
    broken = trajectory.model_copy(update={"messages": messages})
    with pytest.raises(EncodingError, match="inconsistent at assistant turn 1"):
        encode_trajectory(broken, tokenizer, max_tokens=2048)


def test_unusable_trajectories_are_refused(tokenizer: PreTrainedTokenizerBase) -> None:
    trajectory = text_only_group("u", 1)[0]
    with pytest.raises(EncodingError, match="no reward"):
        encode_trajectory(trajectory.model_copy(update={"reward": None}), tokenizer, 2048)
    with pytest.raises(EncodingError, match="group_id"):
        encode_trajectory(trajectory.model_copy(update={"group_id": None}), tokenizer, 2048)
    tokens = trajectory.model_copy(
        update={
            "text_only": False,
            "token_ids": [1, 99_999_999],
            "logprobs": [0.0, -1.0],
            "loss_mask": [0, 1],
        }
    )
    with pytest.raises(EncodingError, match="vocabulary"):
        encode_trajectory(tokens, tokenizer, 2048)


def test_policy_token_logprobs_match_the_full_logits_on_policy_positions() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from astra_trainer.grpo.step import policy_token_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, 64, (2, 12))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0  # padding at the end of the second row
    mask = torch.zeros_like(ids)
    mask[0, 4:8] = 1
    mask[1, 2:5] = 1
    full = token_logprobs(model(input_ids=ids, attention_mask=attention).logits, ids) * mask
    fast = policy_token_logprobs(model, ids, attention, mask)
    assert torch.allclose(fast, full, atol=1e-5)
    assert (fast[mask == 0] == 0).all()
    fast[mask == 1].sum().backward()  # type: ignore[no-untyped-call]  # gradients flow through the selected positions only
    assert model.lm_head.weight.grad is not None


@pytest.mark.timeout(600)
def test_grpo_steps_move_the_real_model_toward_the_better_trajectory(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """The direction of learning on the real model: after a few steps on one group, the
    unrewarded trajectory's policy tokens are much less likely and the margin between the two
    grows (a sign error or a shifted mask would shrink it, or leave it). The rewarded one's
    own logprob may drift down a little: the two share most tokens (the tool-call format),
    which the negative advantage pushes down too (likelihood displacement), so the test
    asserts the margin, not its absolute value."""
    from transformers import AutoModelForCausalLM

    from astra_trainer.grpo.step import grpo_step, policy_token_logprobs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        model_store().ensure_default(), dtype=torch.float32
    )
    better, worse = (encode_trajectory(t, tokenizer, 2048) for t in text_only_group("dir", 2))
    assert better.reward > worse.reward

    def policy_logprob(encoded: Any) -> float:
        ids = torch.tensor([encoded.input_ids])
        mask = torch.tensor([encoded.loss_mask])
        with torch.no_grad():
            return float(policy_token_logprobs(model, ids, torch.ones_like(ids), mask).sum())

    before = policy_logprob(better), policy_logprob(worse)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    for _ in range(2):
        stats = grpo_step(
            model, optimizer, [[better, worse]], clip_low=0.2, clip_high=0.28,
            max_grad_norm=1.0, micro_batch_size=2, pad_token_id=0,
        )  # fmt: skip
        assert stats.ratio_mean == pytest.approx(1.0)  # fresh behaviour logprobs each step
    after = policy_logprob(better), policy_logprob(worse)
    assert after[0] - after[1] > before[0] - before[1] + 5.0, (before, after)
    assert after[1] < before[1] - 5.0, (before, after)
    assert after[0] > before[0] - 0.25 * (before[1] - after[1]), (before, after)


def test_micro_batches_pair_sequences_of_similar_length() -> None:
    """The step orders the batch by length before cutting micro-batches: lengths 10, 40, 12
    and 38 in pairs forward 4 pad positions, not 56 (10+40, 12+38 in the order given), and the
    loss and update equal those of one sequence per micro-batch (no padding at all)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from astra_trainer.grpo.encoding import EncodedTrajectory
    from astra_trainer.grpo.step import grpo_step

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)

    def sequence(name: str, length: int, reward: float) -> EncodedTrajectory:
        ids = torch.randint(1, 64, (length,), generator=generator).tolist()
        mask = [0] * (length // 2) + [1] * (length - length // 2)
        return EncodedTrajectory(name, name[0], reward, 0, ids, mask, None, 1, 0)

    groups = [
        [sequence("a1", 10, 1.0), sequence("a2", 40, 0.0)],
        [sequence("b1", 12, 0.0), sequence("b2", 38, 1.0)],
    ]
    results = []
    for micro_batch_size in (2, 1):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        before = [p.detach().clone() for p in model.parameters()]
        stats = grpo_step(
            model, torch.optim.SGD(model.parameters(), lr=1.0), groups, clip_low=0.2,
            clip_high=0.2, max_grad_norm=1e9, micro_batch_size=micro_batch_size, pad_token_id=0,
        )  # fmt: skip
        update = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
        results.append((stats, update))
    (paired, paired_update), (single, single_update) = results
    assert paired.padded_tokens == 4
    assert single.padded_tokens == 0
    assert paired.tokens == single.tokens == 100
    assert paired.loss == pytest.approx(single.loss, abs=1e-6)
    assert paired.grad_norm == pytest.approx(single.grad_norm, rel=1e-4)
    assert paired.grad_norm > 0
    for a, b in zip(paired_update, single_update, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
