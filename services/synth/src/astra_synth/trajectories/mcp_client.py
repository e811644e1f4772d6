"""MCP client helpers: a connected ``mcp.Client`` with auth, tools as ``ToolSpec``.

Tool results become text by ``astra_common.mcp_text.tool_result_text``, as in rollout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Tool

from astra_proto import ToolSpec

MCP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


def auth_headers(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` when a token is given."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def mcp_client(
    url: str, *, token: str | None = None, http: httpx2.AsyncClient | None = None
) -> AsyncIterator[Client]:
    """A connected MCP client for ``url`` (the SDK's default protocol negotiation).

    A client of its own keeps its own cookies (envhost's ``/envs/...`` episodes hang on one),
    so pass ``http`` only for URLs that name their state themselves (``/episodes/...``).
    """
    if http is not None:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(headers=auth_headers(token), timeout=MCP_TIMEOUT) as own,
        Client(streamable_http_client(url, http_client=own)) as client,
    ):
        yield client


async def list_all_tools(client: Client) -> list[Tool]:
    """Every tool the server lists, following pagination."""
    tools: list[Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def mcp_tool_to_raw(tool: Tool) -> dict[str, Any]:
    """An MCP tool definition as a plain OpenAI-style dict (not yet validated)."""
    return {
        "name": tool.name,
        "description": tool.description or "",
        "parameters": dict(tool.input_schema or {}),
        "output_schema": dict(tool.output_schema) if tool.output_schema else None,
    }


def to_tool_spec(raw: dict[str, Any]) -> ToolSpec:
    """``ToolSpec`` from an OpenAI-style dict; raises ``ValueError`` when it does not fit."""
    return ToolSpec.model_validate(raw)
