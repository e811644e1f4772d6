"""envhost as the rollout sees it: episodes over REST, tools over MCP.

``EpisodeBackend`` and ``ToolSession`` are the two interfaces the agent loop drives;
``EnvhostClient`` implements them against a real envhost: its REST calls go through the typed
envhost client (``astra_common.clients.envhost``), an episode's to the replica that holds it
(the one its ``mcp_url`` names). MCP uses the SDK's client on one
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

from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.envhost import EnvhostAtCapacity
from astra_common.clients.envhost import EnvhostClient as EnvhostRest
from astra_common.mcp_text import tool_result_text
from astra_common.retry import HttpRetriesExhausted, HttpRetryPolicy, RetryableReply, retry_http
from astra_proto import Episode, EpisodeRequest, RewardBreakdown, ScoreRequest, ToolSpec

MCP_PROTOCOL = "2026-07-28"
"""The MCP revision the rollout speaks (sessionless; envhost serves it)."""

CREATE_RETRIES = 5
"""Tries of an episode creation that envhost answers 503 (at capacity)."""

CREATE_MAX_WAIT_S = 8.0
"""Default longest wait between those tries (envhost's ``Retry-After`` is honoured up to it)."""

DEFAULT_TIMEOUT_S = 60.0
"""Timeout of a REST call when the shared HTTP client has no read timeout."""


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
    """``EpisodeBackend`` against envhost at ``base_url`` (REST, through the typed envhost
    client of each replica) and its episodes' MCP URLs."""

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
        self._token = token
        self._replicas: dict[str, EnvhostRest] = {}
        self._create_retry = HttpRetryPolicy(
            retries=CREATE_RETRIES - 1,
            backoff_s=create_backoff_s,
            max_backoff_s=create_max_wait_s,
        )

    def _rest(self, replica: str) -> EnvhostRest:
        """The REST client of the replica at ``replica``, on the shared HTTP client (whose
        read timeout it keeps)."""
        client = self._replicas.get(replica)
        if client is None:
            timeout_s = self._http.timeout.read or DEFAULT_TIMEOUT_S
            client = EnvhostRest(replica, token=self._token, http=self._http, timeout_s=timeout_s)
            self._replicas[replica] = client
        return client

    async def create_episode(self, request: EpisodeRequest) -> Episode:
        """POST /v1/episodes; retries 503 (at capacity: nothing was created) by the shared HTTP
        retry policy, honouring envhost's ``Retry-After``; raises ``EnvhostError`` on anything
        else, and when envhost stays at capacity. A lost connection is not retried: envhost
        may have created the episode."""
        rest = self._rest(self.base_url)

        async def post() -> Episode:
            try:
                return await rest.create_episode(request)
            except EnvhostAtCapacity as exc:
                raise RetryableReply(str(_error("creating an episode", exc)), exc.reply) from None
            except ServiceError as exc:
                raise _error("creating an episode", exc) from None

        what = f"creating an episode at {self.base_url}/v1/episodes"
        try:
            attempted = await retry_http(post, policy=self._create_retry, what=what)
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
        try:
            moved = await self._rest(replica_url(episode)).advance_turn(episode.id)
        except ServiceError as exc:
            raise _error("advancing the turn", exc) from None
        return moved.turn

    async def score(self, episode: Episode, final_answer: str | None) -> RewardBreakdown:
        body = ScoreRequest(final_answer=final_answer[:100_000] if final_answer else None)
        try:
            return await self._rest(replica_url(episode)).score_episode(episode.id, body)
        except ServiceError as exc:
            raise _error("scoring", exc) from None

    async def close_episode(self, episode: Episode) -> None:
        try:
            await self._rest(replica_url(episode)).close_episode(episode.id)
        except ServiceError as exc:
            if exc.status != 404:  # already gone: closed
                raise _error("closing the episode", exc) from None


def _error(action: str, error: ServiceError) -> EnvhostError:
    """``error`` as the rollout reports it: envhost's refusal with its status and reason, or
    the client's own line (unreachable, an answer that is no valid body)."""
    if isinstance(error, ServiceUnreachable) or not error.detail:
        return EnvhostError(str(error), status=error.status)
    return EnvhostError(
        f"envhost refused {action} (HTTP {error.status}): {error.detail}", status=error.status
    )
