"""A direct path for the hot request of rollouts: ``tools/call`` on ``/episodes/{id}/mcp``.

``ToolCallFastPathMiddleware`` is the outermost of the app's middleware (inside only FastAPI's
own error and body-limit layers), in front of the metrics middleware (the fast path counts what
it answers itself, under the same labels) and the router. A sessionless (2026-07-28)
``tools/call`` POST to an episode open on this replica is answered there, after the checks
the endpoint and the SDK make, each in a precompiled form:

- the bearer token, when one is configured (as ``MCPEndpoint``);
- content type, ``Host`` and ``Origin`` (the SDK's ``TransportSecurityMiddleware``) and the
  ``Accept`` header (``check_accept_headers``): verdicts come from the SDK's own functions and
  are kept per distinct header value, so a client's repeated headers cost a dict lookup;
- routing headers (no duplicates, ``Mcp-Method`` and ``Mcp-Name`` equal to the body's method
  and tool name, ``MCP-Protocol-Version`` a served revision equal to the envelope's), the
  JSON-RPC envelope and the ``tools/call`` parameters at the request's revision (the shape
  every client sends is checked in line; any other goes through the SDK's schema check).

The call then goes straight to ``EpisodeManager.call_tool``, as the SDK path's handler does
(argument validation against the tool's JSON schema, the call record, the journal), and the
reply is the JSON-RPC response the SDK would send: same status, headers and ``CallToolResult``.

The path is switchable (``ASTRA_ENVHOST_TOOL_CALL_FAST_PATH``, on by default) and guarded:
``create_app`` leaves it out on an MCP SDK version other than the one it was tested against
(``SDK_GUARD``), with one warning, since a new SDK may check or answer differently.

Anything else (another path or method, the session handshake, ``Mcp-Param-*`` headers, a
request any check rejects, an episode not open here) goes to the app unchanged, with the body
it has read replayed, so every error keeps coming from one place: the SDK (or the endpoint's
401). What the fast path skips is the per-request machinery: route matching, the middleware
chain, a ``ServerRunner`` and connection per request, the handler ladder and result models.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    decode_header_value,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types.methods import validate_client_request
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astra_common.library_guard import LibraryGuard
from astra_envhost.episodes import EpisodeError, EpisodeManager
from astra_envhost.mcp_results import call_tool_result

SDK_GUARD = LibraryGuard(
    {"mcp": "==2.3.0", "mcp-types": "==2.3.0"},
    what="envhost's tools/call fast path",
    setting="ASTRA_ENVHOST_TOOL_CALL_FAST_PATH",
)
"""The MCP SDK versions whose checks and replies the fast path was tested to equal; on any
other the app leaves the path out (``create_app``)."""

ROUTE = "/episodes/{episode_id}/mcp"
"""The route the fast path serves (its metrics label)."""

_PREFIX, _SUFFIX = "/episodes/", "/mcp"
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode()
_VERSION = MCP_PROTOCOL_VERSION_HEADER.encode()
_METHOD = MCP_METHOD_HEADER.encode()
_NAME = MCP_NAME_HEADER.encode()
_MODERN = frozenset(version.encode() for version in MODERN_PROTOCOL_VERSIONS)
_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
_META_KEYS = frozenset(
    {PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY}
)
_CLIENT_INFO_KEYS = frozenset({"name", "version"})
_JSON = b"application/json"
# json.dumps(..., separators=(",", ":")) as the SDK writes replies, with one encoder for all.
_wire = json.JSONEncoder(separators=(",", ":")).encode
_SECURITY_HEADERS = (b"content-type", b"host", b"origin")

_Headers = tuple[bytes, bytes, tuple[bytes | None, bytes | None, bytes | None], bytes | None]
"""Protocol version, tool name, the transport-security headers, accept."""
_VERDICTS_KEPT = 1024  # distinct header values remembered per check


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that yields ``messages`` (the request as read so far), then ``receive``'s."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _request_with(headers: list[tuple[bytes, bytes | None]]) -> Request:
    """A bare POST request carrying ``headers`` (those given as None are left out)."""
    raw = [(name, value) for name, value in headers if value is not None]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def _remember(verdicts: dict[Any, bool], key: Any, verdict: bool) -> bool:
    if len(verdicts) >= _VERDICTS_KEPT:
        verdicts.clear()
    verdicts[key] = verdict
    return verdict


class ToolCallFastPath:
    """Serves eligible ``tools/call`` requests of REST-created episodes (see the module doc)."""

    def __init__(
        self,
        manager: EpisodeManager,
        *,
        security_settings: TransportSecuritySettings | None,
        max_body_bytes: int,
        server_info: dict[str, Any],
        api_token: str | None,
        requests: Counter | None = None,
        latency: Histogram | None = None,
        service: str = "envhost",
    ) -> None:
        """``server_info``: the MCP server's ``serverInfo`` stamp, put in every result's
        ``_meta`` as the SDK does on the 2026-07-28 revision. ``requests`` and ``latency``:
        the app's HTTP metrics (labelled as the metrics middleware labels them)."""
        self.manager = manager
        # Every result ends with the same _meta member: written once.
        self.result_end = f',"_meta":{_wire({SERVER_INFO_META_KEY: server_info})}}}}}'
        self.max_body_bytes = max_body_bytes
        self.api_token = api_token
        self.security = TransportSecurityMiddleware(security_settings)
        # The SDK's verdicts on (content type, host, origin) and on accept, per distinct value.
        self.security_verdicts: dict[tuple[bytes | None, ...], bool] = {}
        self.accept_verdicts: dict[bytes | None, bool] = {}
        self.served = (
            requests.labels(service, "POST", ROUTE, "200") if requests is not None else None
        )
        self.failed = (
            requests.labels(service, "POST", ROUTE, "500") if requests is not None else None
        )
        self.latency = latency.labels(service, "POST", ROUTE) if latency is not None else None

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request and return None, or return the ``receive`` the app must use."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return receive
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            return receive
        episode_id = path[len(_PREFIX) : -len(_SUFFIX)]
        if not episode_id or "/" in episode_id:
            return receive
        started = time.perf_counter()
        headers = self._eligible_headers(scope)
        if headers is None:
            return receive
        version, name, security, accept = headers
        passed = self.security_verdicts.get(security)
        if passed is None:
            request = _request_with(list(zip(_SECURITY_HEADERS, security, strict=True)))
            refused = await self.security.validate_request(request, is_post=True)
            passed = _remember(self.security_verdicts, security, refused is None)
        acceptable = self.accept_verdicts.get(accept)
        if acceptable is None:
            has_json = check_accept_headers(_request_with([(b"accept", accept)]))[0]
            acceptable = _remember(self.accept_verdicts, accept, has_json)
        if not (passed and acceptable):
            return receive
        episode = self.manager.live.get(episode_id)
        if episode is None:
            return receive
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return replaying(messages, receive)
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if len(body) > self.max_body_bytes:
            return replaying(messages, receive)
        call = _tool_call(body, version, name)
        if call is None:
            return replaying(messages, receive)
        request_id, tool_name, arguments = call
        status = 500
        try:
            try:
                record = await self.manager.call_tool(episode, tool_name, arguments)
            except EpisodeError as exc:
                result = call_tool_result(None, str(exc))
            else:
                result = call_tool_result(record.result, record.error)
            # {"jsonrpc":"2.0","id":...,"result":{...,"_meta":{serverInfo}}}, as the SDK writes it
            reply = _wire({"jsonrpc": "2.0", "id": request_id, "result": result})
            content = (reply[:-2] + self.result_end).encode()
            # The headers starlette's Response(content, media_type="application/json") sends.
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", _JSON),
                ],
            }
            status = 200
            await send(start)
            await send({"type": "http.response.body", "body": content})
        finally:
            self._count(status, started)
        return None

    def _count(self, status: int, started: float) -> None:
        counter = self.served if status == 200 else self.failed
        if counter is not None:
            counter.inc()
        if self.latency is not None:
            self.latency.observe(time.perf_counter() - started)

    def _eligible_headers(self, scope: Scope) -> _Headers | None:
        """The headers the remaining checks need, when the plain header checks pass.

        Plain checks: a sessionless ``tools/call`` at a served revision, each routing header
        once (a duplicate is the SDK's 400), no ``Mcp-Param-*`` header, a declared body size
        within the limit, and the bearer token when one is configured. The first of repeated
        headers counts, as in starlette's ``Headers.get``.
        """
        version = method = name = length = None
        content_type = host = origin = accept = authorization = None
        routing = 0
        for key, value in scope["headers"]:
            if key == _VERSION:
                version, routing = value, routing + 1
            elif key == _METHOD:
                method, routing = value, routing + 1
            elif key == _NAME:
                name, routing = value, routing + 1
            elif key == b"content-length":
                length = value if length is None else length
            elif key == b"content-type":
                content_type = value if content_type is None else content_type
            elif key == b"host":
                host = value if host is None else host
            elif key == b"origin":
                origin = value if origin is None else origin
            elif key == b"accept":
                accept = value if accept is None else accept
            elif key == b"authorization":
                authorization = value if authorization is None else authorization
            elif key == b"mcp-session-id" or key.startswith(_PARAM_PREFIX):
                return None
        if (
            routing != 3
            or method != b"tools/call"
            or version not in _MODERN
            or name is None
            or length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
        ):
            return None
        if self.api_token is not None and not self._authorized(authorization):
            return None
        return version, name, (content_type, host, origin), accept

    def _authorized(self, authorization: bytes | None) -> bool:
        """``MCPEndpoint``'s check: ``Authorization: Bearer <api_token>``."""
        assert self.api_token is not None
        scheme, _, token = (authorization or b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token, self.api_token)


def _tool_call(
    body: bytes, version: bytes, name_header: bytes
) -> tuple[str | int, str, dict[str, Any]] | None:
    """(id, tool name, arguments) of a ``tools/call`` the SDK would dispatch, else None."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None
    # The JSON-RPC envelope (the SDK's JSONRPCRequest), without extra members.
    if not isinstance(decoded, dict) or decoded.keys() != _ENVELOPE_KEYS:
        return None
    request_id, params = decoded["id"], decoded["params"]
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    if decoded["jsonrpc"] != "2.0" or decoded["method"] != "tools/call":
        return None
    if not isinstance(params, dict) or not params.keys() <= _PARAMS_KEYS:
        return None
    # classify_inbound_request's ladder: the envelope in _meta, then the routing headers.
    meta, name = params.get("_meta"), params.get("name")
    if (
        not isinstance(meta, dict)
        or PROTOCOL_VERSION_META_KEY not in meta
        or CLIENT_CAPABILITIES_META_KEY not in meta
        or meta[PROTOCOL_VERSION_META_KEY] != version.decode("latin-1")
        or not isinstance(name, str)
        or decode_header_value(name_header.decode("latin-1")) != name
    ):
        return None
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        return None
    if not _usual_meta(meta):
        try:  # the SDK's own schema check of the request at its revision
            validate_client_request("tools/call", meta[PROTOCOL_VERSION_META_KEY], params)
        except Exception:
            return None
    return request_id, name, arguments


def _usual_meta(meta: dict[str, Any]) -> bool:
    """Whether ``_meta`` has the shape clients send, which the SDK's request schema accepts.

    Protocol version (already equal to the header's), client capabilities ``{}``, and client
    info absent, null or ``{"name": str, "version": str}``. Other shapes take the SDK's check.
    """
    if not meta.keys() <= _META_KEYS or meta[CLIENT_CAPABILITIES_META_KEY] != {}:
        return False
    info = meta.get(CLIENT_INFO_META_KEY)
    return info is None or (
        isinstance(info, dict)
        and info.keys() == _CLIENT_INFO_KEYS
        and isinstance(info["name"], str)
        and isinstance(info["version"], str)
    )


class ToolCallFastPathMiddleware:
    """ASGI middleware: ``fast_path`` answers what it serves; the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, fast_path: ToolCallFastPath) -> None:
        self.app = app
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fallback = await self.fast_path.serve(scope, receive, send)
            if fallback is None:
                return
            receive = fallback
        await self.app(scope, receive, send)
