"""envhost as the rollout sees it: episodes over REST, tools over MCP.

``EpisodeBackend`` and ``ToolSession`` are the two interfaces the agent loop drives;
``EnvhostClient`` implements them against a real envhost. The REST calls of an episode go to
the replica that holds it (the one its ``mcp_url`` names). MCP uses the SDK's client on one
shared HTTP client with the protocol pinned to the sessionless 2026-07-28 revision, so opening
an episode's tool session costs no handshake round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from astra_common.mcp_text import tool_result_text
from astra_common.retry import HttpRetriesExhausted, HttpRetryPolicy, RetryableReply, retry_http
from astra_proto import Episode, EpisodeRequest, RewardBreakdown, ScoreRequest, ToolSpec

MCP_PROTOCOL = "2026-07-28"
"""The MCP revision the rollout speaks (sessionless; envhost serves it)."""

CREATE_RETRIES = 5
"""Tries of an episode creation that envhost answers 503 (at capacity)."""

CREATE_MAX_WAIT_S = 8.0
"""Default longest wait between those tries (envhost's ``Retry-After`` is honoured up to it)."""


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
        return ToolOutcome(text=tool_result_text(result), is_error=bool(result.is_error))


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
        create_max_wait_s: float = CREATE_MAX_WAIT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._mcp_http = mcp_http
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._create_retry = HttpRetryPolicy(
            retries=CREATE_RETRIES - 1,
            backoff_s=create_backoff_s,
            max_backoff_s=create_max_wait_s,
        )

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        """POST /v1/episodes; retries 503 (at capacity: nothing was created) by the shared HTTP
        retry policy, honouring envhost's ``Retry-After``; raises ``EnvhostError`` on anything
        else, and when envhost stays at capacity. A lost connection is not retried: envhost
        may have created the episode."""
        url = f"{self.base_url}/v1/episodes"

        async def post() -> Episode:
            response = await self._request("POST", url, json=request.model_dump(mode="json"))
            if response.status_code == 201:
                return Episode.model_validate(response.json())
            error = _error("creating an episode", response)
            if response.status_code == 503:
                raise RetryableReply(str(error), response)
            raise error

        try:
            attempted = await retry_http(
                post, policy=self._create_retry, what=f"creating an episode at {url}"
            )
        except HttpRetriesExhausted as exc:
            raise EnvhostError(str(exc.last_error), status=503) from None
        return attempted.value

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
