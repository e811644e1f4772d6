"""A direct path for the hot request of rollouts: ``tools/call`` on ``/episodes/{id}/mcp``.

A sessionless (2026-07-28) ``tools/call`` POST to an episode open on this replica is answered
here: the SDK's own checks run first (DNS-rebinding and content type, accept header, routing
header duplicates, the envelope and header ladder of ``classify_inbound_request``), then the
call goes straight to ``EpisodeManager.call_tool`` and the reply is the JSON-RPC response the
SDK would send (``application/json``, the same ``CallToolResult``). What it skips is the SDK's
per-request machinery: a ``ServerRunner`` and connection per request, the handler ladder and
the result models.

Anything else (another method, the session handshake, ``Mcp-Param-*`` headers, a request any
check rejects, an episode not open here) is handed to the SDK unchanged, with the body it has
read replayed, so errors keep coming from one place.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import validate_client_request
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from astra_envhost.episodes import EpisodeError, EpisodeManager
from astra_envhost.mcp_results import call_tool_result

_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode()
_VERSION = MCP_PROTOCOL_VERSION_HEADER.lower().encode()
_METHOD = MCP_METHOD_HEADER.lower().encode()
_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_MODERN = frozenset(version.encode() for version in MODERN_PROTOCOL_VERSIONS)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once as the whole request, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ToolCallFastPath:
    """Serves eligible ``tools/call`` requests of REST-created episodes (see the module doc)."""

    def __init__(
        self,
        manager: EpisodeManager,
        security_settings: TransportSecuritySettings | None,
        max_body_bytes: int,
        server_info: dict[str, Any],
    ) -> None:
        """``server_info``: the MCP server's ``serverInfo`` stamp, put in every result's
        ``_meta`` as the SDK does on the 2026-07-28 revision."""
        self.manager = manager
        self.server_info_meta = {SERVER_INFO_META_KEY: server_info}
        self.security = TransportSecurityMiddleware(security_settings)
        self.max_body_bytes = max_body_bytes

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request and return None, or return the ``receive`` the SDK must use."""
        if scope["method"] != "POST" or not self._eligible_headers(scope):
            return receive
        request = Request(scope, receive)
        if await self.security.validate_request(request, is_post=True) is not None:
            return receive
        if not check_accept_headers(request)[0]:
            return receive
        body = await request.body()
        fallback = replaying(body, receive)
        episode = self.manager.live.get(scope["path_params"]["episode_id"])
        if episode is None:
            return fallback
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return fallback
        call = _tool_call(decoded, request)
        if call is None:
            return fallback
        request_id, name, arguments = call
        try:
            record = await self.manager.call_tool(episode, name, arguments)
        except EpisodeError as exc:
            result = call_tool_result(None, str(exc))
        else:
            result = call_tool_result(record.result, record.error)
        result["_meta"] = self.server_info_meta  # serialised at once: sharing it is safe
        reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
        content = json.dumps(reply, separators=(",", ":"))
        await Response(content, media_type="application/json")(scope, receive, send)
        return None

    def _eligible_headers(self, scope: Scope) -> bool:
        """A sessionless ``tools/call`` with no ``Mcp-Param-*`` headers and a small body."""
        version = method = length = None
        for name, value in scope["headers"]:
            if name == _VERSION:
                version = value
            elif name == _METHOD:
                method = value
            elif name == b"content-length":
                length = value
            elif name == b"mcp-session-id" or name.startswith(_PARAM_PREFIX):
                return False
        if version not in _MODERN or method != b"tools/call" or length is None:
            return False
        return length.isdigit() and int(length) <= self.max_body_bytes


def _tool_call(decoded: Any, request: Request) -> tuple[str | int, str, dict[str, Any]] | None:
    """(id, tool name, arguments) of a valid ``tools/call`` request, else None."""
    if not isinstance(decoded, dict) or decoded.get("jsonrpc") != "2.0":
        return None
    request_id = decoded.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    if decoded.get("method") != "tools/call" or set(decoded) - {
        "jsonrpc",
        "id",
        "method",
        "params",
    }:
        return None
    if find_duplicated_routing_header(request.headers.items()) is not None:
        return None
    verdict = classify_inbound_request(decoded, headers=dict(request.headers))
    if not isinstance(verdict, InboundModernRoute):
        return None
    params = decoded["params"]
    name, arguments = params.get("name"), params.get("arguments")
    if not isinstance(name, str) or set(params) - {"name", "arguments", "_meta"}:
        return None
    try:  # the SDK's own schema check of the request at its protocol version
        validate_client_request("tools/call", verdict.protocol_version, params)
    except Exception:
        return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    return request_id, name, arguments
