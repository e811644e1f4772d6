"""One reading of an MCP tool result as text, used by synth and rollout alike."""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server import Server

from astra_common.mcp_text import tool_result_text
from astra_rollout.envhost_client import McpToolSession

IMAGE = types.ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")
RESULTS = {
    "text": types.CallToolResult(content=[types.TextContent(type="text", text='{"a": 1}')]),
    "two_texts": types.CallToolResult(
        content=[
            types.TextContent(type="text", text="first"),
            IMAGE,
            types.TextContent(type="text", text="second"),
        ]
    ),
    "structured_only": types.CallToolResult(content=[], structured_content={"city": "Zürich"}),
    "both": types.CallToolResult(
        content=[types.TextContent(type="text", text="as the server wrote it")],
        structured_content={"ignored": True},
    ),
    "image_only": types.CallToolResult(content=[IMAGE]),
}


def test_text_blocks_are_joined_and_other_blocks_left_out() -> None:
    assert tool_result_text(RESULTS["text"]) == '{"a": 1}'
    assert tool_result_text(RESULTS["two_texts"]) == "first\nsecond"
    assert tool_result_text(RESULTS["both"]) == "as the server wrote it"


def test_structured_content_stands_in_when_no_block_is_text() -> None:
    assert tool_result_text(RESULTS["structured_only"]) == '{"city": "Zürich"}'


def test_a_result_with_nothing_readable_is_empty() -> None:
    assert tool_result_text(RESULTS["image_only"]) == ""


def _server() -> Server[Any]:
    """An MCP server whose tools answer with the results above, by name."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, input_schema={"type": "object", "properties": {}})
                for name in RESULTS
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return RESULTS[params.name]

    return Server("results", on_list_tools=list_tools, on_call_tool=call_tool)


async def test_rollout_reads_tool_results_through_a_real_mcp_client_the_same_way() -> None:
    async with Client(_server()) as client:
        session = McpToolSession(client)
        for name, result in RESULTS.items():
            outcome = await session.call_tool(name, {})
            assert outcome.text == tool_result_text(result), name
        structured = await session.call_tool("structured_only", {})
    assert structured.text == '{"city": "Zürich"}'
    assert not structured.is_error
