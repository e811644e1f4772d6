"""The envhost app: REST episodes, MCP endpoints for environments and episodes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from astra_common.db import Database
from astra_common.health import database_check
from astra_common.service import StartupError, bearer_auth, create_service_app
from astra_envhost import __version__
from astra_envhost.episodes import EnvironmentKind, EpisodeManager
from astra_envhost.executions import ExecutionRunner
from astra_envhost.fast_path import SDK_GUARD, ToolCallFastPath, ToolCallFastPathMiddleware
from astra_envhost.kinds import SandboxFactory, builtin_kinds
from astra_envhost.mcp_server import (
    ClientEpisodes,
    MCPEndpoint,
    create_mcp_server,
    security_settings,
)
from astra_envhost.registry import EnvironmentRegistry
from astra_envhost.routes.bfcl import bfcl_router
from astra_envhost.routes.episodes import RedirectToOwner, episodes_router, redirect_to_owner
from astra_envhost.routes.executions import executions_router
from astra_envhost.sandbox import (
    SandboxBackend,
    SandboxLimits,
    SandboxUnavailableError,
    check_sandbox_available,
)
from astra_envhost.sandbox.backend import SandboxPool
from astra_envhost.settings import EnvhostSettings

MCP_METHODS = ["GET", "POST", "DELETE"]


def check_isolation(settings: EnvhostSettings) -> None:
    """Refuse to start without a working sandbox for untrusted tool code, unless told otherwise.

    The check runs a trivial tool in a real sandbox once and verifies its isolation.
    """
    if settings.sandbox == "none" and not settings.allow_unsandboxed:
        raise StartupError(
            "sandbox=none runs untrusted tool code without isolation; set "
            "ASTRA_ENVHOST_ALLOW_UNSANDBOXED=true to allow it for development"
        )
    try:
        check_sandbox_available(settings.sandbox)
    except SandboxUnavailableError as exc:
        raise StartupError(f"{exc}; refusing to run untrusted tool code") from None


def sandbox_factory(settings: EnvhostSettings, pool: SandboxPool | None = None) -> SandboxFactory:
    """Sandboxed backends with the configured isolation and limits (sharing ``pool``'s cap)."""
    limits = SandboxLimits(
        call_timeout_s=settings.tool_timeout_s,
        cpu_seconds=settings.tool_cpu_s,
        memory_bytes=settings.tool_memory_mb * 1024 * 1024,
        max_output_bytes=settings.tool_output_bytes,
    )
    return lambda tools: SandboxBackend(tools, limits=limits, mode=settings.sandbox, pool=pool)


class MCPRoute(Route):
    """A route that names itself in the scope, so the metrics label it by its path template.

    FastAPI's router records the route it matched only for its own API routes.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


@contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Keep what start-up allocated out of the cyclic garbage collector while serving.

    Every tool call keeps its record (the episode's call log), so the collector's oldest
    generation grows and is collected in full every few thousand calls. Most of what it then
    walks was made at start-up and lives as long as the process: the imported modules and
    the SDKs' pydantic validators, which are slow to traverse (a full collection of this
    process took ~140 ms). Frozen, they are skipped and a full collection walks only what
    serving made. Refcounting still frees frozen objects; only reference cycles made before
    the freeze that are (or become) garbage wait until the app stops and they are unfrozen.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    settings: EnvhostSettings, kinds: dict[str, EnvironmentKind] | None = None
) -> FastAPI:
    """Build the envhost app; raises ``StartupError`` when isolation is missing.

    ``kinds`` replaces the built-in environment kinds (tests use it to inject doubles).
    """
    check_isolation(settings)
    database = Database(settings.database_url)
    registry = EnvironmentRegistry(database)
    # Executions always run in the configured sandbox, even when tests replace the kinds; they
    # have their own bound (max_concurrent_executions), episodes share the worker cap.
    executions = ExecutionRunner(
        sandbox_factory(settings), max_concurrent=settings.max_concurrent_executions
    )
    workers = SandboxPool(settings.max_sandbox_workers)
    manager = EpisodeManager(
        database=database,
        registry=registry,
        kinds=kinds if kinds is not None else builtin_kinds(sandbox_factory(settings, workers)),
        base_url=settings.base_url(),
        max_episodes=settings.max_episodes,
        idle_timeout=settings.episode_idle_timeout_s,
        client_idle_timeout=settings.client_idle_timeout_s,
    )
    public_host = urlsplit(settings.base_url()).netloc
    clients = ClientEpisodes(manager)
    mcp_server = create_mcp_server(manager, clients)
    session_manager = StreamableHTTPSessionManager(
        app=mcp_server,
        json_response=True,
        security_settings=security_settings([public_host, *settings.allowed_hosts]),
        max_sessions=settings.max_episodes,
        session_idle_timeout=settings.client_idle_timeout_s,
    )
    token = settings.api_token.get_secret_value() if settings.api_token else None
    endpoint = MCPEndpoint(session_manager, manager, clients, token)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            async with session_manager.run():
                with startup_objects_frozen():
                    yield
        finally:
            await manager.stop()
            await database.dispose()

    app = create_service_app(
        service="envhost",
        version=__version__,
        settings=settings,
        routers=[
            episodes_router(
                manager,
                bearer_auth(settings),
                trust_forwarded_headers=settings.trust_forwarded_headers,
            ),
            executions_router(executions, bearer_auth(settings)),
            bfcl_router(),
        ],
        health_checks={"database": database_check(database.engine)},
        lifespan=lifespan,
    )
    app.add_exception_handler(RedirectToOwner, redirect_to_owner)
    app.router.routes.append(MCPRoute("/envs/{env_id}/mcp", endpoint=endpoint, methods=MCP_METHODS))
    app.router.routes.append(
        MCPRoute("/episodes/{episode_id}/mcp", endpoint=endpoint, methods=MCP_METHODS)
    )
    # Outermost of the app's middleware: tools/call on an episode skips routing and the rest.
    fast_path: ToolCallFastPath | None = None
    if settings.tool_call_fast_path and SDK_GUARD.allows():
        metrics = app.state.metrics
        fast_path = ToolCallFastPath(
            manager,
            security_settings=session_manager.security_settings,
            max_body_bytes=session_manager.max_request_body_size,
            server_info=mcp_server.server_info_stamp,
            api_token=token,
            requests=metrics.requests,
            latency=metrics.latency,
        )
        app.add_middleware(ToolCallFastPathMiddleware, fast_path=fast_path)
    app.state.tool_call_fast_path = fast_path
    app.state.episodes = manager
    app.state.sandbox_workers = workers
    app.state.registry = registry
    app.state.executions = executions
    return app
