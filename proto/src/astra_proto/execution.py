"""Running tool code once, outside any episode: how synthesis verifies LLM-written tools.

envhost's ``POST /v1/executions`` runs ``calls`` in order in one fresh sandbox worker built
from ``tools`` (the same sandbox that serves episodes), then discards the worker.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from astra_proto.base import ContractModel
from astra_proto.tools import SyntheticTool

MAX_EXECUTION_TOOLS = 64
MAX_EXECUTION_CALLS = 256


class ExecutionCall(ContractModel):
    """One call of a tool of the request, with its arguments."""

    tool_name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ExecutionRequest(ContractModel):
    """Tools to load into one fresh sandbox and the calls to run there, in order.

    State persists between the calls (module globals of the tools' code), as in an episode.
    """

    tools: list[SyntheticTool] = Field(min_length=1, max_length=MAX_EXECUTION_TOOLS)
    calls: list[ExecutionCall] = Field(min_length=1, max_length=MAX_EXECUTION_CALLS)


class CallOutcome(ContractModel):
    """What one call did: its structured output, or why it failed."""

    tool_name: str
    output: Any = Field(default=None, description="The call's JSON output when it succeeded.")
    error: str | None = Field(
        default=None,
        description="Why the call failed (tool exception, timeout, crash, invalid arguments, "
        "unknown tool); null when it succeeded.",
    )
    latency_ms: float = Field(ge=0.0)


class ExecutionResult(ContractModel):
    """One outcome per call of the request, in the same order."""

    outcomes: list[CallOutcome]
