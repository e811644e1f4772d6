"""Toolsets over REST: register tool documents (MCP servers, OpenAPI documents, JSON tool
lists), read them with their filter report, and read each server's tool-call graph."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from astra_synth.trajectories.graph import build_graph
from astra_synth.trajectories.models import TOOLSET_ID_PATTERN, ToolGraph, Toolset
from astra_synth.trajectories.settings import TrajectorySettings
from astra_synth.trajectories.store import TrajectoryStore
from astra_synth.trajectories.toolsets import (
    RawServer,
    build_toolset,
    server_from_json,
    server_from_mcp,
    server_from_openapi,
)

MAX_SERVERS = 200


class McpSource(BaseModel):
    """An MCP server (streamable HTTP) whose listed tools form one group."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://", max_length=2_000)
    name: str | None = Field(default=None, max_length=64)
    token: str | None = Field(default=None, max_length=4_000, description="Bearer token.")


class OpenApiSource(BaseModel):
    """An OpenAPI 3 document; each operation becomes a tool."""

    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    name: str | None = Field(default=None, max_length=64)


class JsonToolsSource(BaseModel):
    """A JSON tool list (OpenAI function specs, flat entries or MCP ``inputSchema`` entries)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    tools: list[Any] = Field(max_length=10_000)
    description: str = Field(default="", max_length=10_000)


class ToolsetRequest(BaseModel):
    """Register a toolset: one server per source; the filters (at least N tools, usable
    descriptions, convertible schemas) drop what cannot be used, with reasons."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, pattern=TOOLSET_ID_PATTERN)
    mcp: list[McpSource] = Field(default_factory=list, max_length=MAX_SERVERS)
    openapi: list[OpenApiSource] = Field(default_factory=list, max_length=MAX_SERVERS)
    json_tools: list[JsonToolsSource] = Field(default_factory=list, max_length=MAX_SERVERS)
    settings: TrajectorySettings = Field(default_factory=TrajectorySettings)


def toolsets_router(store: TrajectoryStore, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes of the toolset store (files under the synth data directory)."""
    router = APIRouter(prefix="/toolsets", tags=["toolsets"])

    @router.post("", status_code=201, dependencies=[Depends(auth)], summary="Register a toolset")
    async def register(body: ToolsetRequest) -> Toolset:
        if not (body.mcp or body.openapi or body.json_tools):
            raise HTTPException(422, detail="give at least one of mcp, openapi, json_tools")
        servers: list[RawServer] = []
        for source in body.mcp:
            try:
                servers.append(
                    await server_from_mcp(source.url, name=source.name, token=source.token)
                )
            except Exception as exc:  # the request names a server that cannot be used
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                raise HTTPException(
                    422, detail=f"listing the tools of {source.url} failed: {reason}"
                ) from None
        try:
            servers += [server_from_openapi(s.document, s.name) for s in body.openapi]
            servers += [server_from_json(s.name, s.tools, s.description) for s in body.json_tools]
            toolset = build_toolset(
                body.id or f"ts_{uuid.uuid4().hex[:12]}", servers, body.settings
            )
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        store.save_toolset(toolset)
        for server in toolset.servers:  # schema links now; LLM-proposed chains add to them
            store.save_graph(toolset.id, build_graph(server, []))
        return toolset

    @router.get("", summary="Registered toolset ids")
    async def list_toolsets() -> list[str]:
        return store.list_toolsets()

    @router.get("/{toolset_id}", summary="A toolset: kept servers and tools, and rejections")
    async def read(toolset_id: str) -> Toolset:
        try:
            return store.load_toolset(toolset_id)
        except (KeyError, ValueError):
            raise HTTPException(404, detail=f"no toolset {toolset_id!r}") from None

    @router.get("/{toolset_id}/graph", summary="The tool-call graph of each server (JSON)")
    async def graph(toolset_id: str) -> list[ToolGraph]:
        await read(toolset_id)
        return store.load_graphs(toolset_id)

    return router
