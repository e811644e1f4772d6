"""Tool calls written as text: hermes-style ``<tool_call>{json}</tool_call>`` blocks.

Used when a policy server returns the model's raw text instead of parsed ``tool_calls`` (a
server started without a tool-call parser, or a parser that failed on a block).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class TextToolCall:
    """One ``<tool_call>`` block: its name and JSON arguments, or why it could not be read."""

    name: str
    arguments: str
    error: str | None = None


def has_tool_call_text(text: str | None) -> bool:
    """Whether ``text`` holds at least one ``<tool_call>`` opening tag."""
    return bool(text) and "<tool_call>" in (text or "")


def parse_tool_call_text(text: str) -> tuple[str, list[TextToolCall]]:
    """Split ``text`` into the prose outside ``<tool_call>`` blocks and the blocks' calls.

    Each block must hold a JSON object with a string ``name`` and ``arguments`` given as an
    object (or a JSON string of one); a block that does not comes back with ``error`` set and
    the raw block as ``arguments``, so the caller can tell the model what was wrong. An
    unterminated last block (the model stopped before ``</tool_call>``) is read too.
    """
    calls: list[TextToolCall] = []
    for match in _BLOCK.finditer(text):
        calls.append(_read_block(match.group(1).strip()))
    prose = _BLOCK.sub("", text).strip()
    return prose, calls


def _read_block(body: str) -> TextToolCall:
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return TextToolCall("", body, f"tool call is not valid JSON: {exc.msg}")
    if not isinstance(value, dict):
        return TextToolCall("", body, "tool call must be a JSON object")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return TextToolCall("", body, "tool call has no string 'name'")
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return TextToolCall(name, body, f"arguments of {name} are not valid JSON: {exc.msg}")
    if not isinstance(arguments, dict):
        return TextToolCall(name, body, f"arguments of {name} must be a JSON object")
    return TextToolCall(name, json.dumps(arguments, ensure_ascii=False))
