"""What an environment offers a person besides its tools: its task as an MCP prompt, and its
description as an MCP resource, so that any MCP client can play it end to end."""

from __future__ import annotations

import mcp_types as types

from astra_proto import EnvironmentSpec, ToolSpec

TASK_PROMPT = "task"
"""Name of the prompt that holds the episode's task (its user turns so far)."""


def resource_uri(env_id: str) -> str:
    """The URI of an environment's description resource."""
    return f"astra://environments/{env_id}"


def task_prompt(spec: EnvironmentSpec) -> types.Prompt:
    """The task prompt's definition (it takes no arguments)."""
    turns = 1 + len(spec.followup_turns)
    later = f" ({turns} user turns; later ones appear as the episode advances)" if turns > 1 else ""
    return types.Prompt(
        name=TASK_PROMPT,
        title="Task",
        description=(
            f"The user's task in this {spec.domain} environment{later}. "
            "Solve it with the tools, then state the final answer."
        ),
    )


def task_messages(spec: EnvironmentSpec, turn: int) -> types.GetPromptResult:
    """The task as user messages: the first turn and every follow-up up to ``turn``."""
    texts = [spec.task, *spec.followup_turns[:turn]]
    return types.GetPromptResult(
        description=f"Task of environment {spec.id}",
        messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))
            for text in texts
        ],
    )


def description_resource(spec: EnvironmentSpec) -> types.Resource:
    """The description resource's listing entry."""
    return types.Resource(
        uri=resource_uri(spec.id),
        name="environment",
        title=f"Environment {spec.id}",
        description="What this environment is: its task, tools and how an episode is scored.",
        mime_type="text/markdown",
    )


def description_text(spec: EnvironmentSpec, tools: list[ToolSpec]) -> str:
    """The environment described in Markdown for a person (or a model) about to play it."""
    lines = [
        f"# Environment {spec.id}",
        "",
        f"- domain: {spec.domain}",
        f"- scenario: {spec.scenario_type or 'unspecified'}",
        f"- kind: {spec.builtin.name if spec.builtin is not None else 'synthetic'}",
        f"- user turns: {1 + len(spec.followup_turns)}",
        "",
        "## Task",
        "",
        spec.task,
        "",
        "## Tools",
        "",
        *[f"- `{tool.name}`: {tool.description}" for tool in tools],
        "",
        "## Scoring",
        "",
    ]
    if spec.builtin is not None:
        lines.append("The calls are checked turn by turn with the benchmark's own checker.")
    else:
        lines.append(
            f"The task has {len(spec.sub_questions)} sub-questions. The reward is the F1 of the "
            "sub-questions solved (a successful call of the right tool whose output holds the "
            "sub-answer) against every call made, so unnecessary calls cost precision."
        )
    return "\n".join(lines) + "\n"


def description_contents(spec: EnvironmentSpec, tools: list[ToolSpec]) -> types.ReadResourceResult:
    """``resources/read`` of the description."""
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(
                uri=resource_uri(spec.id),
                mime_type="text/markdown",
                text=description_text(spec, tools),
            )
        ]
    )
