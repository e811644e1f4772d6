"""Every environment and every episode as an MCP server (streamable HTTP, MCP SDK 2.x).

One low-level ``Server`` and one session manager serve all paths; handlers find their episode
from the request. Per the 2026-07-28 revision, state that spans requests is named by an
explicit identifier the client passes on every request (see docs/mcp.md):

- ``/episodes/{episode_id}/mcp`` — the URL names the episode: both protocol generations, any
  client. An episode not open here fails at connect: 307 to the replica that holds it (with a
  JSON-RPC error naming that URL, for clients that follow no redirect), else 404.
- ``/envs/{env_id}/mcp`` — the URL names only the environment, so each client's episode hangs
  on its ``Mcp-Session-Id``: this path serves the session handshake and answers the sessionless
  revision with "unsupported version" (its ``server/discover`` lists only session-era versions,
  and dual-era clients fall back to ``initialize``). A session opens its episode at its first
  ``tools/call``, ends it with ``DELETE``, and loses it after ``client_idle_timeout_s`` idle.

Besides tools, every path offers the task as the prompt ``task`` and the environment's
description as a resource.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import (
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from astra_envhost import __version__
from astra_envhost.episodes import (
    EpisodeError,
    EpisodeManager,
    EpisodeNotFound,
    LiveEpisode,
    utc_now,
)
from astra_envhost.mcp_content import (
    TASK_PROMPT,
    description_contents,
    description_resource,
    resource_uri,
    task_messages,
    task_prompt,
)
from astra_envhost.mcp_results import tool_result
from astra_envhost.registry import UnknownEnvironment
from astra_proto import EnvironmentSpec, EpisodeRequest, ToolSpec

EPISODE_HEADER = "x-astra-episode-id"
SESSION_HEADER = "mcp-session-id"
RESOURCE_NOT_FOUND = -32002
"""The MCP error code for an unknown resource URI."""


def mcp_tools(tools: Iterable[ToolSpec]) -> list[types.Tool]:
    """Tool specs as MCP tool definitions."""
    return [
        types.Tool(name=tool.name, description=tool.description, input_schema=tool.parameters)
        for tool in tools
    ]


class ClientEpisodes:
    """The episodes that clients of ``/envs/{id}/mcp`` opened, by ``Mcp-Session-Id``."""

    def __init__(self, manager: EpisodeManager) -> None:
        self.manager = manager
        self.by_session: dict[str, str] = {}
        self._opening = asyncio.Lock()

    def get(self, session_id: str) -> LiveEpisode | None:
        """The session's open episode; None before its first call.

        ``EpisodeNotFound`` when its episode was closed (over REST) or expired: the session
        does not silently start over in a fresh state.
        """
        episode_id = self.by_session.get(session_id)
        if episode_id is None:
            return None
        episode = self.manager.live.get(episode_id)
        if episode is None:
            raise EpisodeNotFound(
                f"this session's episode {episode_id!r} was closed or expired (clients idle for "
                f"{self.manager.client_idle_timeout:g}s are reclaimed); connect again for a "
                "fresh episode"
            )
        return episode

    async def open(self, session_id: str, env_id: str) -> LiveEpisode:
        """The session's episode, opened now if it has none (``EpisodeError`` when it cannot)."""
        async with self._opening:  # one episode per session, even for concurrent first calls
            episode = self.get(session_id)
            if episode is not None:
                return episode
            if len(self.by_session) > max(1024, 2 * len(self.manager.live)):
                # sessions whose episode is gone: by now the SDK has closed them as idle too
                for held, episode_id in list(self.by_session.items()):
                    if episode_id not in self.manager.live:
                        del self.by_session[held]
            episode = await self.manager.create(EpisodeRequest(env_id=env_id), for_client=True)
            self.by_session[session_id] = episode.id
            return episode

    async def end(self, session_id: str) -> None:
        """The session ended: close its episode."""
        episode_id = self.by_session.pop(session_id, None)
        if episode_id is not None:
            await self.manager.close(episode_id)


class EpisodeResolver:
    """Finds the episode (or, before a session's first call, the environment) of a request."""

    def __init__(self, manager: EpisodeManager, clients: ClientEpisodes) -> None:
        self.manager = manager
        self.clients = clients

    async def episode(self, request: Request | None, *, open_one: bool) -> LiveEpisode | None:
        """The request's episode; on ``/envs`` paths None until ``open_one`` opens it."""
        if request is None:
            raise MCPError(INVALID_PARAMS, "this server is served over HTTP only")
        params = request.path_params
        try:
            if "episode_id" in params:
                return await self.manager.get(params["episode_id"])
            session_id = request.headers.get(SESSION_HEADER)
            if session_id is None:  # MCPEndpoint refuses sessionless requests on /envs
                raise MCPError(INVALID_REQUEST, "requests on /envs/{id}/mcp need a session")
            episode = self.clients.get(session_id)
            if episode is None and open_one:
                episode = await self.clients.open(session_id, params["env_id"])
        except EpisodeError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        if episode is not None:
            episode.last_active_at = utc_now()
        return episode

    async def view(self, request: Request | None) -> tuple[EnvironmentSpec, list[ToolSpec], int]:
        """The environment, the tools offered now and the user turn, without opening anything."""
        episode = await self.episode(request, open_one=False)
        if episode is not None:
            return episode.spec, episode.offered_tools(), episode.turn
        assert request is not None
        env_id = request.path_params["env_id"]
        try:
            spec = (await self.manager.registry.get(env_id)).spec
            tools = await self.manager.first_turn_tools(env_id)
        except (UnknownEnvironment, EpisodeError) as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        return spec, tools, 0


def create_mcp_server(manager: EpisodeManager, clients: ClientEpisodes) -> Server[Any]:
    """The low-level MCP server whose handlers dispatch on the request path."""
    resolve = EpisodeResolver(manager, clients)

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        _, tools, _ = await resolve.view(ctx.request)
        return types.ListToolsResult(tools=mcp_tools(tools))

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            episode = await resolve.episode(ctx.request, open_one=True)
        except MCPError as exc:
            return tool_result(None, exc.error.message)
        assert episode is not None
        try:
            record = await manager.call_tool(episode, params.name, dict(params.arguments or {}))
        except EpisodeError as exc:
            return tool_result(None, str(exc))
        return tool_result(record.result, record.error)

    async def list_prompts(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        spec, _, _ = await resolve.view(ctx.request)
        return types.ListPromptsResult(prompts=[task_prompt(spec)])

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        spec, _, turn = await resolve.view(ctx.request)
        if params.name != TASK_PROMPT:
            raise MCPError(
                INVALID_PARAMS, f"unknown prompt {params.name!r}; this server offers: {TASK_PROMPT}"
            )
        return task_messages(spec, turn)

    async def list_resources(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        spec, _, _ = await resolve.view(ctx.request)
        return types.ListResourcesResult(resources=[description_resource(spec)])

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        spec, tools, _ = await resolve.view(ctx.request)
        uri = resource_uri(spec.id)
        if str(params.uri) != uri:
            raise MCPError(
                RESOURCE_NOT_FOUND, f"unknown resource {str(params.uri)!r}; offered: {uri}"
            )
        return description_contents(spec, tools)

    server: Server[Any] = Server(
        "astra-envhost",
        version=__version__,
        instructions=(
            "Tools of an ASTRA environment; each client works in its own episode. "
            "The prompt 'task' holds the task; the resource describes the environment."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        # Tool schemas here declare no Mcp-Param headers; without this the SDK runs the whole
        # tools/list handler on every tools/call just to look for them (~0.2 ms a call).
        get_tool_input_schema=lambda _name: None,
    )

    async def discover(ctx: Any, params: types.RequestParams) -> types.DiscoverResult:
        # /envs paths keep each client's episode in its session: advertise only the session
        # era there, which dual-era clients answer with the initialize handshake.
        on_env = ctx.request is not None and "env_id" in ctx.request.path_params
        versions = HANDSHAKE_PROTOCOL_VERSIONS if on_env else MODERN_PROTOCOL_VERSIONS
        return types.DiscoverResult(
            supported_versions=list(versions),
            capabilities=server.get_capabilities(protocol_version=ctx.protocol_version),
            instructions=server.instructions,
        )

    server.add_request_handler("server/discover", types.RequestParams, discover)
    return server


def security_settings(allowed_hosts: Iterable[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection that accepts loopback and the configured host names."""
    hosts = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=[*hosts, *allowed_hosts]
    )


def sessionless_refusal(request_id: Any, requested: str, env_id: str) -> JSONResponse:
    """The 2026-07-28 answer to a version a path does not serve: 400, ``-32022``, the versions
    it does serve (here the session era), and where the sessionless revision is served."""
    message = (
        f"Unsupported protocol version {requested} on /envs/{env_id}/mcp: each client's episode "
        "lives in its MCP session, so this URL speaks the session handshake (initialize). "
        "Sessionless clients: open an episode (POST /v1/episodes) and use its "
        "/episodes/{id}/mcp URL"
    )
    error = {
        "code": UNSUPPORTED_PROTOCOL_VERSION,
        "message": message,
        "data": {"supported": list(HANDSHAKE_PROTOCOL_VERSIONS), "requested": requested},
    }
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error}, status_code=400)


class MCPEndpoint:
    """ASGI app in front of the session manager: auth, unknown paths, and /envs sessions.

    ``tools/call`` requests on ``/episodes/{id}/mcp`` are mostly answered before they get here,
    by the app's ``ToolCallFastPathMiddleware``; whatever it does not serve comes here.
    """

    def __init__(
        self,
        session_manager: StreamableHTTPSessionManager,
        manager: EpisodeManager,
        clients: ClientEpisodes,
        api_token: str | None,
    ) -> None:
        self.app = StreamableHTTPASGIApp(session_manager)
        self.manager = manager
        self.clients = clients
        self.api_token = api_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if not self._authorized(request):
            response = JSONResponse(
                {"detail": "missing or invalid bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        params = request.path_params
        if "env_id" in params:
            await self._serve_environment(request, scope, receive, send)
            return
        episode_id = params["episode_id"]
        if episode_id not in self.manager.live:  # fail at connect, not at the first request
            try:
                await self.manager.get(episode_id)
            except EpisodeNotFound as exc:
                if exc.owner_url:
                    response = await redirect_to_owner(request, exc.owner_url, str(exc))
                else:
                    response = JSONResponse({"detail": str(exc)}, status_code=404)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

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
        try:
            await self.manager.registry.get(env_id)
        except UnknownEnvironment as exc:
            await JSONResponse({"detail": str(exc)}, status_code=404)(scope, receive, send)
            return
        session_id = request.headers.get(SESSION_HEADER)
        version = request.headers.get("mcp-protocol-version", "")
        method = request.headers.get("mcp-method")
        if (
            session_id is None
            and request.method == "POST"
            and version in MODERN_PROTOCOL_VERSIONS
            and method is not None
            and method != "server/discover"
        ):
            await sessionless_refusal(await _request_id(request), version, env_id)(
                scope, receive, send
            )
            return

        async def send_with_episode(message: Message) -> None:
            if message["type"] == "http.response.start" and session_id is not None:
                episode_id = self.clients.by_session.get(session_id)
                if episode_id is not None:
                    header = (EPISODE_HEADER.encode(), episode_id.encode())
                    message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_episode)
        if request.method == "DELETE" and session_id is not None:
            await self.clients.end(session_id)


async def redirect_to_owner(request: Request, owner_url: str, message: str) -> JSONResponse:
    """307 to the replica that holds the episode, with a JSON-RPC error naming it.

    A gateway follows the redirect; an MCP client (the SDKs follow none that leave the origin)
    fails with the error, which names the URL to connect to.
    """
    location = owner_url.rstrip("/") + request.url.path
    error = {"code": INVALID_REQUEST, "message": message, "data": {"location": location}}
    body = {"jsonrpc": "2.0", "id": await _request_id(request), "error": error}
    return JSONResponse(body, status_code=307, headers={"Location": location})


async def _request_id(request: Request) -> Any:
    """The JSON-RPC id of a request body (None when there is none to read)."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str | int) else None
