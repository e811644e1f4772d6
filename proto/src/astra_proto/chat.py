"""Chat messages in the OpenAI chat-completions shape."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from astra_proto.base import ContractModel


class FunctionCall(ContractModel):
    """The function part of a tool call; ``arguments`` is a JSON string, as OpenAI sends it."""

    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ``ValueError`` when they are not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"tool call arguments are not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ValueError("tool call arguments must be a JSON object")
        return value


class ToolCall(ContractModel):
    """One tool call requested by the assistant."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(ContractModel):
    """One chat message: system, user, assistant (text and/or tool calls) or tool result."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(
        default=None, description="For role 'tool': the call answered."
    )
    name: str | None = Field(default=None, description="For role 'tool': the tool's name.")

    @model_validator(mode="after")
    def _shape_matches_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need tool_call_id")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError("only tool messages carry tool_call_id")
        if self.role in ("system", "user") and self.content is None:
            raise ValueError(f"{self.role} messages need content")
        return self
