"""Trainer test support: the real default model (converted once per machine), sample data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from astra_trainer.models import ModelStore

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = REPO_ROOT / ".pytest_cache" / "d" / "astra-trainer-models"

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "format_24h": {"type": "boolean"}},
            "required": ["zone"],
        },
    },
}
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Prague"]
SYSTEM_PROMPT = "You answer weather questions with the tools you are given."

_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def model_store() -> ModelStore:
    """The model store shared by trainer tests (converted on first use, ~30 s, then verified)."""
    return ModelStore(MODEL_CACHE)


@pytest.fixture(scope="module")
def model_folder() -> Path:
    """The converted default model."""
    return model_store().ensure_default()


def weather_row(city: str, index: int) -> dict[str, Any]:
    """One exported SFT row (the exporter's format): a call, its result, a final answer."""
    arguments = json.dumps({"city": city})
    return {
        "id": f"row-{index}",
        "messages": [
            {
                "role": "system",
                "content": SYSTEM_PROMPT,
                "tool_calls": None,
                "tool_call_id": None,
                "name": None,
            },
            {
                "role": "user",
                "content": f"What is the weather in {city}?",
                "tool_calls": None,
                "tool_call_id": None,
                "name": None,
            },
            {
                "role": "assistant",
                "content": None,
                "tool_call_id": None,
                "name": None,
                "tool_calls": [
                    {
                        "id": f"call-{index}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {
                "role": "tool",
                "content": json.dumps({"temp_c": 10 + index}),
                "tool_calls": None,
                "tool_call_id": f"call-{index}",
                "name": "get_weather",
            },
            {
                "role": "assistant",
                "content": f"It is {10 + index} °C in {city}.",
                "tool_calls": None,
                "tool_call_id": None,
                "name": None,
            },
        ],
        # Two tools with different argument shapes: the reason arguments stay strings.
        "tools": json.dumps([WEATHER_TOOL, TIME_TOOL]),
        "env_id": "env-weather",
        "domain": "weather",
        "source": "test",
        "score": 1.0,
        "metadata": "{}",
    }


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """The ``<tool_call>`` blocks of a completion, parsed; raises when one is not JSON."""
    return [json.loads(block) for block in _TOOL_CALL.findall(text)]


# -- real trajectories for GRPO ----------------------------------------------------------------

GRPO_SYSTEM = "Answer in one short sentence."


def _timings() -> Any:
    from datetime import UTC, datetime

    from astra_proto.trajectory import Timings

    now = datetime.now(UTC)
    return Timings(started_at=now, finished_at=now)


def sampled_groups(
    folder: Path,
    *,
    groups: int,
    group_size: int,
    max_new_tokens: int = 16,
    seed: int = 0,
    prefix: str = "t",
    policy_version: int = 0,
) -> list[Any]:
    """Trajectories sampled from the real model: ``groups`` tasks x ``group_size`` rollouts.

    Each carries prompt + completion token ids, a loss mask over the completion and the
    behaviour logprobs of the sampled tokens (temperature 1), as a vLLM server returns them.
    Rewards follow a test rule that varies within a group (member i solves i % 3 of 2
    sub-questions): the trainer must not care where rewards come from.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from astra_proto import FinishReason, Message, RewardBreakdown, Trajectory

    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(seed)
    end: int = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out: list[Trajectory] = []
    for g in range(groups):
        city = CITIES[(g + seed) % len(CITIES)]
        messages = [
            {"role": "system", "content": GRPO_SYSTEM},
            {"role": "user", "content": f"Describe {city} in a few words."},
        ]
        prompt = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        prompt_ids = torch.tensor([prompt])
        generated = model.generate(
            prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=group_size,
            output_logits=True,
            return_dict_in_generate=True,
            eos_token_id=end,
            pad_token_id=end,
        )
        logits = torch.stack(generated.logits, dim=1).float()  # [n, new, vocab]
        logprobs_all = torch.log_softmax(logits, dim=-1)
        for i in range(group_size):
            completion = generated.sequences[i, len(prompt) :].tolist()
            if end in completion:
                completion = completion[: completion.index(end) + 1]
            behaviour = [float(logprobs_all[i, t, token]) for t, token in enumerate(completion)]
            solved = [f"q{k}" for k in range(i % 3)]
            reward = RewardBreakdown.compute(2, solved, n_calls=max(len(solved), 1))
            text = tokenizer.decode(completion, skip_special_tokens=True)
            out.append(
                Trajectory(
                    id=f"{prefix}-g{g}-r{i}",
                    env_id="env-describe",
                    group_id=f"{prefix}-g{g}",
                    policy_version=policy_version,
                    messages=[
                        Message(role="system", content=GRPO_SYSTEM),
                        Message(role="user", content=messages[1]["content"]),
                        Message(role="assistant", content=text),
                    ],
                    tools=[],
                    token_ids=list(prompt) + completion,
                    logprobs=[0.0] * len(prompt) + behaviour,
                    loss_mask=[0] * len(prompt) + [1] * len(completion),
                    text_only=False,
                    reward=reward,
                    finish_reason=FinishReason.FINAL_ANSWER,
                    turns=1,
                    timings=_timings(),
                )
            )
    return out


def text_only_group(prefix: str, group_size: int, policy_version: int = 0) -> list[Any]:
    """A multi-turn, text-only group (a tool call, its output, an answer) with varying rewards."""
    from astra_proto import (
        FinishReason,
        FunctionCall,
        Message,
        RewardBreakdown,
        ToolCall,
        ToolSpec,
        Trajectory,
    )

    spec = ToolSpec(
        name="get_weather",
        description=WEATHER_TOOL["function"]["description"],
        parameters=WEATHER_TOOL["function"]["parameters"],
    )
    out = []
    for i in range(group_size):
        city = CITIES[i % len(CITIES)]
        call = ToolCall(
            id=f"c{i}",
            function=FunctionCall(name="get_weather", arguments=json.dumps({"city": city})),
        )
        solved = ["q0"] if i % 2 == 0 else []
        out.append(
            Trajectory(
                id=f"{prefix}-r{i}",
                env_id="env-weather",
                group_id=prefix,
                policy_version=policy_version,
                messages=[
                    Message(role="system", content=SYSTEM_PROMPT),
                    Message(role="user", content="What is the weather in Paris?"),
                    Message(role="assistant", tool_calls=[call]),
                    Message(role="tool", tool_call_id=f"c{i}", content='{"temp_c": 18}'),
                    Message(role="assistant", content=f"It is 18 °C in {city}."),
                ],
                tools=[spec],
                reward=RewardBreakdown.compute(1, solved, n_calls=1),
                finish_reason=FinishReason.FINAL_ANSWER,
                turns=2,
                timings=_timings(),
            )
        )
    return out


async def publish_trajectories(redis_url: str, stream: str, trajectories: list[Any]) -> None:
    """Publish ``trajectories`` to ``stream`` with the real publisher."""
    import redis.asyncio as aioredis

    from astra_common.streams import StreamPublisher
    from astra_proto import StreamEnvelope, Trajectory

    client = aioredis.Redis.from_url(redis_url)
    try:
        async with StreamPublisher(client, stream) as publisher:
            await publisher.publish_many(
                StreamEnvelope[Trajectory](record_id=t.id, payload=t) for t in trajectories
            )
    finally:
        await client.aclose()
