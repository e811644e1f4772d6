"""The LLM tool emulator, for tools known only by their documents (docs/method.md A4).

It sees the tool's definition, the call, the server's description and the last five calls,
and answers with a plausible structured output. A configurable share of calls (default 20%)
fail on purpose, so agents learn to recover; which calls fail is a function of the seed and
the call (its position, tool and arguments) only. Arguments that break the tool's schema fail
without asking the LLM, as a real server would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from astra_proto.api.synth import ToolServer
from astra_synth.llm import ChatModel
from astra_synth.llm_pipeline.ask import StageReply, Unparseable
from astra_synth.trajectories.asker import Asker

SYSTEM_EMULATE = (
    "You emulate one tool of a server. Given the tool's definition, the server's description, "
    "the recent calls and the new call, return what the real tool would return: realistic, "
    "consistent with the recent calls, following the output schema when there is one. When "
    "'fail' is true, return instead a realistic error the tool could give for this call. "
    'Reply with JSON only: {"output": {...}} or, when failing, {"error": "..."}'
)
HISTORY = 5


class EmulatorReply(StageReply):
    output: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class EmulatedCall:
    """One emulated call: ``output`` on success, ``error`` otherwise (``injected`` when the
    failure was drawn on purpose)."""

    tool_name: str
    arguments: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    injected: bool = False


def should_fail(
    seed: int, index: int, tool_name: str, arguments: dict[str, Any], rate: float
) -> bool:
    """Whether call number ``index`` fails on purpose: a uniform draw from a hash of the seed
    and the call, below ``rate``."""
    key = json.dumps([seed, index, tool_name, arguments], sort_keys=True, default=str)
    draw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return draw < rate


@dataclass
class ToolEmulator:
    """Emulates the tools of ``server`` with ``llm``; one instance per trajectory, or one per
    call given the trajectory's recent ``history`` and ``earlier_calls``, the calls made before
    that history (so call positions, and the failures drawn from them, stay the same)."""

    llm: ChatModel
    server: ToolServer
    failure_rate: float = 0.2
    seed: int = 0
    history: list[EmulatedCall] = field(default_factory=list)
    earlier_calls: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if self.earlier_calls < 0:
            raise ValueError("earlier_calls must be >= 0")
        self._asker = Asker(self.llm, temperature=0.3)

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> EmulatedCall:
        """Emulate one call and remember it. ``LLMError`` and ``Unparseable`` propagate: the
        trajectory being played cannot go on without a tool result."""
        index = self.earlier_calls + len(self.history)
        try:
            tool = self.server.tool(tool_name)
        except KeyError:
            names = [t.name for t in self.server.tools]
            return self._remember(
                EmulatedCall(
                    tool_name, arguments, None, f"unknown tool {tool_name!r}; available: {names}"
                )
            )
        problems = sorted(
            e.message
            for e in jsonschema.validators.validator_for(tool.parameters)(
                tool.parameters
            ).iter_errors(arguments)
        )
        if problems:
            return self._remember(
                EmulatedCall(
                    tool_name,
                    arguments,
                    None,
                    f"invalid arguments for {tool_name}: {'; '.join(problems)}",
                )
            )
        fail = should_fail(self.seed, index, tool_name, arguments, self.failure_rate)
        payload = {
            "server": self.server.name,
            "server_description": self.server.description,
            "tool": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "output_schema": tool.output_schema,
            },
            "recent_calls": [
                {
                    "tool": c.tool_name,
                    "arguments": c.arguments,
                    "output": c.output,
                    "error": c.error,
                }
                for c in self.history[-HISTORY:]
            ],
            "call": {"tool": tool_name, "arguments": arguments},
            "fail": fail,
        }
        reply = await self._asker.ask("emulate", SYSTEM_EMULATE, payload, EmulatorReply)
        if fail:
            error = reply.error or f"{tool_name} failed"
            return self._remember(EmulatedCall(tool_name, arguments, None, error, injected=True))
        if reply.output is None:
            raise Unparseable("emulate: the reply has no 'output'", json.dumps(reply.model_dump()))
        return self._remember(EmulatedCall(tool_name, arguments, reply.output, None))

    def _remember(self, call: EmulatedCall) -> EmulatedCall:
        self.history.append(call)
        return call
