"""Tool definitions: the OpenAI function schema, and synthesized tools with code."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from astra_proto.base import ContractModel

TOOL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"


class ToolSpec(ContractModel):
    """A tool as an LLM sees it: name, description and a JSON Schema of its arguments.

    This is the OpenAI function schema; MCP tools map onto it one to one
    (``inputSchema`` is ``parameters``).
    """

    name: str = Field(pattern=TOOL_NAME_PATTERN, description="Unique name within an episode.")
    description: str = Field(min_length=1, description="What the tool does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (type object) of the arguments.",
    )
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the structured result, when known."
    )
    domain: str | None = Field(default=None, description="Domain the tool belongs to.")

    @field_validator("parameters")
    @classmethod
    def _parameters_is_object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("parameters must be a JSON Schema with type 'object'")
        properties = value.get("properties", {})
        if not isinstance(properties, dict):
            raise ValueError("parameters.properties must be an object")
        required = value.get("required", [])
        if not isinstance(required, list) or any(name not in properties for name in required):
            raise ValueError("parameters.required must list names defined in properties")
        return value

    def to_openai(self) -> dict[str, Any]:
        """The ``tools`` entry of an OpenAI chat-completions request."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ReferenceCall(ContractModel):
    """A concrete call of a tool whose output is known to contain a sub-question's answer."""

    tool_name: str = Field(pattern=TOOL_NAME_PATTERN)
    arguments: dict[str, Any] = Field(default_factory=dict)
    sub_question_id: str | None = Field(
        default=None, description="The sub-question this call answers, if any."
    )
    expected_answer: str | None = Field(
        default=None, description="The sub-answer the structured output must contain."
    )


class SyntheticTool(ContractModel):
    """A code-executable tool: its spec, its Python source and the calls that verify it.

    The code is untrusted (an LLM may have written it): it only ever runs in a sandbox.
    """

    spec: ToolSpec
    code: str = Field(min_length=1, description="Python source defining the entrypoint function.")
    entrypoint: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the function in ``code`` that implements the tool.",
    )
    reference_calls: list[ReferenceCall] = Field(default_factory=list)
