"""Tool-call results in MCP form: the SDK's model, and the same result as wire JSON."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

# json.dumps(result, ensure_ascii=False, allow_nan=False), without building an encoder per call.
_text = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def tool_result(result: Any, error: str | None) -> types.CallToolResult:
    """An MCP result: JSON text for the model, the structured output for programs."""
    if error is not None:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=error)], is_error=True
        )
    structured = result if isinstance(result, dict) else {"result": result}
    text = json.dumps(result, ensure_ascii=False, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def call_tool_result(result: Any, error: str | None) -> dict[str, Any]:
    """``tool_result(result, error)`` as the SDK puts it on the wire, built without the model.

    Equal to ``tool_result(...).model_dump(by_alias=True, mode="json", exclude_none=True)``;
    a result ``json`` cannot write as it is (a date, a set, NaN) goes through the model.
    """
    if error is not None:
        return {
            "content": [{"type": "text", "text": error}],
            "isError": True,
            "resultType": "complete",
        }
    try:
        text = _text(result)
    except (TypeError, ValueError, RecursionError):
        dumped: dict[str, Any] = tool_result(result, None).model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        return dumped
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": result if isinstance(result, dict) else {"result": result},
        "isError": False,
        "resultType": "complete",
    }
