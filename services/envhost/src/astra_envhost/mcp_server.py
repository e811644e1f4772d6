"""Every environment and every episode as an MCP tool server (streamable HTTP, MCP SDK 2.x).

One low-level ``Server`` and one session manager serve all paths; handlers find their episode
from the request:

- ``/episodes/{episode_id}/mcp`` — an episode created over REST (the rollout path).
- ``/envs/{env_id}/mcp`` — any MCP client gets a fresh episode of the environment. Clients on
  the sessionless 2026-07-28 revision keep it through the ``astra_episode`` cookie the first
  response sets (the SDK's HTTP client keeps cookies); clients on the session handshake keep it
  through their ``Mcp-Session-Id``, and ending the session closes the episode. A client that
  keeps neither gets a fresh episode for every request. The episode id is also sent back in the
  ``X-Astra-Episode-Id`` response header.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import (
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from astra_envhost import __version__
from astra_envhost.episodes import CapacityError, EpisodeError, EpisodeManager, LiveEpisode
from astra_envhost.mcp_results import tool_result
from astra_envhost.registry import UnknownEnvironment
from astra_proto import EpisodeRequest

EPISODE_COOKIE = "astra_episode"
EPISODE_HEADER = "x-astra-episode-id"
SCOPE_EPISODE = "astra.episode_id"


def mcp_tools(episode: LiveEpisode) -> list[types.Tool]:
    """The episode's tools at its current turn, as MCP tool definitions."""
    return [
        types.Tool(name=tool.name, description=tool.description, input_schema=tool.parameters)
        for tool in episode.offered_tools()
    ]


class EpisodeResolver:
    """Finds (or opens) the episode a request is for."""

    def __init__(self, manager: EpisodeManager) -> None:
        self.manager = manager

    async def __call__(self, request: Request | None) -> LiveEpisode:
        if request is None:
            raise MCPError(INVALID_PARAMS, "this server is served over HTTP only")
        params = request.path_params
        try:
            if "episode_id" in params:
                return await self.manager.get(params["episode_id"])
            # /envs paths: the endpoint opened (or found) the episode before dispatching here.
            return await self.manager.get(request.scope[SCOPE_EPISODE])
        except EpisodeError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None


def create_mcp_server(manager: EpisodeManager) -> Server[Any]:
    """The low-level MCP server whose handlers dispatch on the request path."""
    resolve = EpisodeResolver(manager)

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        episode = await resolve(ctx.request)
        return types.ListToolsResult(tools=mcp_tools(episode))

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            episode = await resolve(ctx.request)
        except MCPError as exc:
            return tool_result(None, exc.error.message)
        try:
            record = await manager.call_tool(episode, params.name, dict(params.arguments or {}))
        except EpisodeError as exc:
            return tool_result(None, str(exc))
        return tool_result(record.result, record.error)

    return Server(
        "astra-envhost",
        version=__version__,
        instructions="Tools of an ASTRA environment; each client works in its own episode.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # Tool schemas here declare no Mcp-Param headers; without this the SDK runs the whole
        # tools/list handler on every tools/call just to look for them (~0.2 ms a call).
        get_tool_input_schema=lambda _name: None,
    )


def security_settings(allowed_hosts: Iterable[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection that accepts loopback and the configured host names."""
    hosts = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=[*hosts, *allowed_hosts]
    )


class MCPEndpoint:
    """ASGI app in front of the session manager: auth, and episode identity for /envs paths.

    ``tools/call`` requests on ``/episodes/{id}/mcp`` are mostly answered before they get here,
    by the app's ``ToolCallFastPathMiddleware``; whatever it does not serve comes here.
    """

    def __init__(
        self,
        session_manager: StreamableHTTPSessionManager,
        manager: EpisodeManager,
        api_token: str | None,
    ) -> None:
        self.app = StreamableHTTPASGIApp(session_manager)
        self.manager = manager
        self.api_token = api_token
        self.sessions: dict[str, str] = {}  # legacy Mcp-Session-Id → episode id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        if not self._authorized(request):
            response = JSONResponse(
                {"detail": "missing or invalid bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        if "env_id" not in request.path_params or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._serve_environment(request, scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        if self.api_token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token, self.api_token)

    async def _serve_environment(
        self, request: Request, scope: Scope, receive: Receive, send: Send
    ) -> None:
        env_id = request.path_params["env_id"]
        session_id = request.headers.get("mcp-session-id")
        episode_id = self._known_episode(request, env_id, session_id)
        fresh = episode_id is None
        if episode_id is None:
            try:
                episode = await self.manager.create(EpisodeRequest(env_id=env_id))
            except UnknownEnvironment as exc:
                await JSONResponse({"detail": str(exc)}, status_code=404)(scope, receive, send)
                return
            except CapacityError as exc:
                await JSONResponse({"detail": str(exc)}, status_code=503)(scope, receive, send)
                return
            except EpisodeError as exc:
                await JSONResponse({"detail": str(exc)}, status_code=422)(scope, receive, send)
                return
            episode_id = episode.id
        scope[SCOPE_EPISODE] = episode_id
        path = request.url.path

        async def send_with_identity(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((EPISODE_HEADER.encode(), episode_id.encode()))
                if fresh:
                    cookie = f"{EPISODE_COOKIE}={episode_id}; Path={path}; HttpOnly; SameSite=Lax"
                    headers.append((b"set-cookie", cookie.encode()))
                for name, value in headers:
                    if name.lower() == b"mcp-session-id" and session_id is None:
                        self.sessions[value.decode()] = episode_id
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_identity)
        if request.method == "DELETE" and session_id is not None:
            ended = self.sessions.pop(session_id, None)
            if ended is not None:
                await self.manager.close(ended)

    def _known_episode(self, request: Request, env_id: str, session_id: str | None) -> str | None:
        candidates = []
        cookie = SimpleCookie(request.headers.get("cookie", ""))
        if EPISODE_COOKIE in cookie:
            candidates.append(cookie[EPISODE_COOKIE].value)
        if session_id is not None and session_id in self.sessions:
            candidates.append(self.sessions[session_id])
        for episode_id in candidates:
            episode = self.manager.live.get(episode_id)
            if episode is not None and episode.spec.id == env_id:
                return episode_id
        return None
