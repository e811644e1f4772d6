"""envhost as the rollout sees it: episodes over REST, tools over MCP.

``EpisodeBackend`` and ``ToolSession`` are the two interfaces the agent loop drives;
``EnvhostClient`` implements them against a real envhost. The REST calls of an episode go to
the replica that holds it (the one its ``mcp_url`` names). MCP uses the SDK's client on one
shared HTTP client with the protocol pinned to the sessionless 2026-07-28 revision, so opening
an episode's tool session costs no handshake round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from astra_proto import Episode, EpisodeRequest, RewardBreakdown, ScoreRequest, ToolSpec

MCP_PROTOCOL = "2026-07-28"
"""The MCP revision the rollout speaks (sessionless; envhost serves it)."""

CREATE_RETRIES = 5
"""Tries of an episode creation that envhost answers 503 (at capacity)."""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call returned, as text for the model."""

    text: str
    is_error: bool


class ToolSession(Protocol):
    """The tools of one episode."""

    async def list_tools(self) -> list[ToolSpec]:
        """The tools offered now (distractors included; BFCL adds some at later turns)."""
        ...

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one call; a tool's own failure is an outcome with ``is_error``, not a raise."""
        ...


class EpisodeBackend(Protocol):
    """Where episodes live: create, talk to, advance, score, close."""

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        """A fresh episode."""
        ...

    def tool_session(self, episode: Episode) -> AbstractAsyncContextManager[ToolSession]:
        """A tool session on ``episode`` for the duration of the block."""
        ...

    async def advance_turn(self, episode: Episode) -> int:
        """Move a multi-turn episode to its next user turn; returns the new turn."""
        ...

    async def score(self, episode: Episode, final_answer: str | None) -> RewardBreakdown | None:
        """The environment's verdict on the episode (None: the backend has no verifier)."""
        ...

    async def close_episode(self, episode: Episode) -> None:
        """Release the episode."""
        ...


class EnvhostError(Exception):
    """envhost refused or failed a request; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def replica_url(episode: Episode) -> str:
    """Base URL of the envhost replica holding ``episode`` (from its MCP URL)."""
    suffix = f"/episodes/{episode.id}/mcp"
    if episode.mcp_url.endswith(suffix):
        return episode.mcp_url[: -len(suffix)]
    raise EnvhostError(f"episode {episode.id} has an unexpected MCP URL {episode.mcp_url!r}")


class McpToolSession:
    """``ToolSession`` over an MCP client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def list_tools(self) -> list[ToolSpec]:
        tools: list[ToolSpec] = []
        cursor: str | None = None
        while True:
            page = await self._client.list_tools(cursor=cursor, cache_mode="bypass")
            for tool in page.tools:
                tools.append(
                    ToolSpec(
                        name=tool.name,
                        description=tool.description or tool.name,
                        parameters=dict(tool.input_schema) or {"type": "object", "properties": {}},
                    )
                )
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """The call's result; a protocol error the server answers for this call (e.g. an
        unknown tool on a server that reports it so, not as a tool error) is the call's
        error result too, as envhost itself answers it."""
        try:
            result = await self._client.call_tool(name, arguments)
        except MCPError as exc:
            return ToolOutcome(text=f"Error: {exc}", is_error=True)
        return ToolOutcome(text=result_text(result), is_error=bool(result.is_error))


def result_text(result: CallToolResult) -> str:
    """The text content of a tool result (JSON text for envhost's structured outputs)."""
    parts = [block.text for block in result.content if isinstance(block, TextContent)]
    return "\n".join(parts)


class EnvhostClient:
    """``EpisodeBackend`` against envhost at ``base_url`` (REST) and its episodes' MCP URLs."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient,
        mcp_http: httpx2.AsyncClient,
        token: str | None = None,
        create_backoff_s: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._mcp_http = mcp_http
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._create_backoff_s = create_backoff_s

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        """POST /v1/episodes; retries 503 (at capacity) with backoff, raises on anything else."""
        for attempt in range(1, CREATE_RETRIES + 1):
            response = await self._request(
                "POST", f"{self.base_url}/v1/episodes", json=request.model_dump(mode="json")
            )
            if response.status_code == 201:
                return Episode.model_validate(response.json())
            if response.status_code != 503 or attempt == CREATE_RETRIES:
                raise _error("creating an episode", response)
            await asyncio.sleep(self._create_backoff_s * attempt)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def tool_session(self, episode: Episode) -> AsyncIterator[ToolSession]:
        transport = streamable_http_client(
            episode.mcp_url, http_client=self._mcp_http, terminate_on_close=False
        )
        async with Client(transport, mode=MCP_PROTOCOL, cache=None) as client:
            yield McpToolSession(client)

    async def advance_turn(self, episode: Episode) -> int:
        url = f"{replica_url(episode)}/v1/episodes/{episode.id}/turns"
        response = await self._request("POST", url)
        if response.status_code != 200:
            raise _error("advancing the turn", response)
        return int(response.json()["turn"])

    async def score(self, episode: Episode, final_answer: str | None) -> RewardBreakdown:
        url = f"{replica_url(episode)}/v1/episodes/{episode.id}/score"
        body = ScoreRequest(final_answer=final_answer[:100_000] if final_answer else None)
        response = await self._request("POST", url, json=body.model_dump(mode="json"))
        if response.status_code != 200:
            raise _error("scoring", response)
        return RewardBreakdown.model_validate(response.json())

    async def close_episode(self, episode: Episode) -> None:
        url = f"{replica_url(episode)}/v1/episodes/{episode.id}"
        response = await self._request("DELETE", url)
        if response.status_code not in (204, 404):
            raise _error("closing the episode", response)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EnvhostError(f"envhost unreachable at {url}: {reason}") from exc


def _error(action: str, response: httpx.Response) -> EnvhostError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return EnvhostError(
        f"envhost refused {action} (HTTP {response.status_code}): {str(detail)[:500]}",
        status=response.status_code,
    )
