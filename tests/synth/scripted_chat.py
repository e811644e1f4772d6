"""``ScriptedChat``: a TEST DOUBLE of ``astra_synth.llm.ChatModel`` for trajectory synthesis.

It recognises the stage of a request by its system prompt (the prompt constants of
``astra_synth.trajectories``), reads the stage's JSON input, and answers with what the test's
script returns for (stage, input): a reply text (well-formed, or malformed on purpose), or an
exception to raise. Every request is recorded. Token counts are word counts, not a tokenizer's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from astra_synth.llm import Completion
from astra_synth.llm_pipeline.ask import INPUT_HEADER
from astra_synth.trajectories.chains import (
    SYSTEM_CHAIN_TO_QUERY,
    SYSTEM_COHERENCE,
    SYSTEM_QUERY_TO_CHAIN,
)
from astra_synth.trajectories.emulator import SYSTEM_EMULATE
from astra_synth.trajectories.graph import SYSTEM_PROPOSE
from astra_synth.trajectories.judge import SYSTEM_JUDGE
from astra_synth.trajectories.user_tasks import (
    SYSTEM_AUGMENT,
    SYSTEM_SERVER_TASKS,
    SYSTEM_TASK_QUALITY,
)

STAGE_OF_PROMPT = {
    SYSTEM_PROPOSE: "propose",
    SYSTEM_COHERENCE: "coherence",
    SYSTEM_CHAIN_TO_QUERY: "chain_to_query",
    SYSTEM_QUERY_TO_CHAIN: "query_to_chain",
    SYSTEM_SERVER_TASKS: "server_tasks",
    SYSTEM_AUGMENT: "augment",
    SYSTEM_TASK_QUALITY: "task_quality",
    SYSTEM_EMULATE: "emulate",
    SYSTEM_JUDGE: "judge",
}

Script = Callable[[dict[str, Any]], str | Exception | dict[str, Any]]


@dataclass
class ScriptedChat:
    """Answers each stage with ``script[stage](input)``; a dict reply is sent as JSON."""

    script: dict[str, Script]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        stage = STAGE_OF_PROMPT[messages[0]["content"]]
        user = messages[-1]["content"]
        assert user.startswith(INPUT_HEADER)
        payload = json.loads(user[len(INPUT_HEADER) :])
        self.requests.append((stage, payload))
        if stage not in self.script:
            raise AssertionError(f"no script for stage {stage!r}")
        reply = self.script[stage](payload)
        if isinstance(reply, Exception):
            raise reply
        text = json.dumps(reply) if isinstance(reply, dict) else reply
        words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return Completion(text=text, prompt_tokens=words, completion_tokens=len(text.split()))

    def stages(self) -> list[str]:
        """The stage of every request, in order."""
        return [stage for stage, _ in self.requests]
