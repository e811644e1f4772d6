"""Toolsets over REST: register tool documents (MCP servers, OpenAPI documents, JSON tool
lists), read them with their filter report, and read each server's tool-call graph."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException

from astra_proto.api.synth import ToolGraph, Toolset, ToolsetRequest
from astra_synth.trajectories.graph import build_graph
from astra_synth.trajectories.store import TrajectoryStore
from astra_synth.trajectories.toolsets import (
    RawServer,
    build_toolset,
    server_from_json,
    server_from_mcp,
    server_from_openapi,
)


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
