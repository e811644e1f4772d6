"""``astra-envhost-gateway``: one address in front of every envhost replica.

A reverse proxy that follows ownership: a request naming an episode goes to the replica that
holds it (learned from the replicas' 307 answers and from the episodes created through the
gateway), a session-era MCP request goes to the replica that issued its ``Mcp-Session-Id``,
and everything else round-robin to a replica that answers. Responses are streamed through as
they arrive (SSE and long-lived GET streams included). See docs/services/envhost.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import httpx
import uvicorn
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from astra_common.settings import settings_error_message
from astra_envhost import __version__
from astra_envhost.gateway_routing import (
    Affinity,
    Replicas,
    Upstream,
    created_episode,
    episode_of,
    is_environment_mcp,
    owner_from_redirect,
)

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
MAX_REDIRECTS = 3
"""307s followed for one request (a replica's owner record can be one step stale)."""
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "x-forwarded-for"}
_NOT_FORWARDED |= {"x-forwarded-host", "x-forwarded-proto"}
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
"""Nothing reached the replica: the request can go to another one."""


class GatewaySettings(BaseSettings):
    """How the envhost gateway runs (env prefix ``ASTRA_GATEWAY_``)."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRA_GATEWAY_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    host: str = "127.0.0.1"
    """Interface the gateway listens on."""

    port: int = Field(default=8104, gt=0, lt=65536)
    """TCP port the gateway listens on."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of the gateway and its HTTP server."""

    upstream: str = "http://127.0.0.1:8101"
    """URL of the envhost replicas; its host name is resolved to all its addresses (Docker's
    DNS answers one per replica), each a replica, again every resolve_interval_s."""

    replicas: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Replica URLs, comma-separated; when set, used as they are instead of resolving
    upstream."""

    resolve_interval_s: float = Field(default=5.0, gt=0)
    """How often the upstream name is resolved again (replicas come and go)."""

    connect_timeout_s: float = Field(default=5.0, gt=0)
    """Longest wait to connect to a replica; one that does not answer in time is skipped for
    requests that may go to any replica."""

    read_timeout_s: float = Field(default=300.0, gt=0)
    """Longest wait for the next bytes of a replica's answer, except on GET event streams
    (MCP's server-to-client stream), which stay open as long as both ends do."""

    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body forwarded, in bytes; a larger one is answered 413."""

    max_affinity_entries: int = Field(default=100_000, ge=1)
    """Episode owners and MCP sessions the gateway remembers, each (least recently used
    forgotten first; a forgotten episode is found again by its 307, a forgotten session must
    initialize again)."""

    max_upstream_connections: int = Field(default=1000, ge=1)
    """Open connections to the replicas at most (each open MCP GET stream holds one)."""

    @field_validator("replicas", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("upstream", "replicas")
    @classmethod
    def _http_urls(cls, value: str | list[str]) -> str | list[str]:
        for url in [value] if isinstance(value, str) else value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return value


class Gateway:
    """The proxy: forwards one request to the replica it belongs to and streams the answer."""

    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.replicas = Replicas(upstream=settings.upstream, fixed=settings.replicas)
        self.owners: Affinity[str, Upstream] = Affinity(settings.max_affinity_entries)
        self.sessions: Affinity[str, Upstream] = Affinity(settings.max_affinity_entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await self._body(request)
        if body is None:
            limit = self.settings.max_request_body_bytes
            detail = f"request body is larger than this gateway accepts ({limit} bytes)"
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        forward = self._forwarder(request, body)
        path = request.url.path
        episode_id = episode_of(path)
        answer: httpx.Response | Response
        try:
            if episode_id is not None:
                answer = await self._to_episode(episode_id, path, forward)
            elif is_environment_mcp(path) and SESSION_HEADER in request.headers:
                answer = await self._to_session(request.headers[SESSION_HEADER], request, forward)
            else:
                answer = await self._to_any(request, forward)
        except httpx.TimeoutException as exc:
            answer = JSONResponse({"detail": f"envhost did not answer in time ({exc})"}, 504)
        except httpx.HTTPError as exc:
            answer = unavailable(f"envhost answer failed: {type(exc).__name__}: {exc}")
        if isinstance(answer, Response):
            await answer(scope, receive, send)
        else:
            await relay(answer, receive, send)

    async def _body(self, request: Request) -> bytes | None:
        """The whole request body (they are small), or None past the cap."""
        limit = self.settings.max_request_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

    def _forwarder(
        self, request: Request, body: bytes
    ) -> Callable[[Upstream], Awaitable[httpx.Response]]:
        """Sends this request to a replica (answer streamed, not yet read)."""
        headers = upstream_headers(request)
        stream = request.method == "GET" and "text/event-stream" in request.headers.get(
            "accept", ""
        )
        timeout = httpx.Timeout(
            self.settings.read_timeout_s,
            connect=self.settings.connect_timeout_s,
            read=None if stream else self.settings.read_timeout_s,
            pool=self.settings.connect_timeout_s,
        )
        # the path as the client wrote it (percent-escapes kept), not as decoded for routing
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        target = path + (f"?{request.url.query}" if request.url.query else "")

        async def forward(upstream: Upstream) -> httpx.Response:
            outgoing = self.client.build_request(
                request.method,
                upstream.url + target,
                headers=[("host", upstream.host), *headers],
                content=body or None,
                timeout=timeout,
            )
            return await self.client.send(outgoing, stream=True)

        return forward

    async def _to_episode(
        self, episode_id: str, path: str, forward: Callable[[Upstream], Awaitable[httpx.Response]]
    ) -> httpx.Response | Response:
        """To the replica holding the episode: the one remembered, else any, following 307s.

        Until an owner is known, a 404 may only mean that the owner's record has not reached
        the database yet: the other replicas are asked too.
        """
        owner = self.owners.get(episode_id)
        others = [r for r in self.replicas.rotation() if r != owner]
        target = owner or (others.pop(0) if others else None)
        redirects = 0
        while target is not None:
            try:
                response = await forward(target)
            except _UNREACHABLE:
                if target == owner:
                    self.owners.forget(episode_id)
                    return unavailable(f"the envhost at {target.url} holding {episode_id} is down")
                target = others.pop(0) if others else None
                continue
            if response.status_code == 307 and redirects < MAX_REDIRECTS:
                moved = owner_from_redirect(response.headers.get("location"), path)
                if moved is not None:
                    await response.aclose()
                    self.owners.put(episode_id, moved)
                    owner = target = moved
                    redirects += 1
                    continue
            if response.status_code == 404 and owner is None and others:
                await response.aclose()
                target = others.pop(0)
                continue
            if response.status_code in (204, 404):
                self.owners.forget(episode_id)  # closed (DELETE) or gone
            elif response.is_success and target != owner:
                self.owners.put(episode_id, target)  # it answered for the episode: it holds it
            return response
        return unavailable("no envhost replica answers")

    async def _to_session(
        self,
        session_id: str,
        request: Request,
        forward: Callable[[Upstream], Awaitable[httpx.Response]],
    ) -> httpx.Response | Response:
        """To the replica that issued the MCP session; unknown sessions get MCP's 404."""
        upstream = self.sessions.get(session_id)
        if upstream is None:
            return session_not_found()
        try:
            response = await forward(upstream)
        except _UNREACHABLE:
            self.sessions.forget(session_id)
            return session_not_found()
        if request.method == "DELETE" or response.status_code == 404:
            self.sessions.forget(session_id)
        return response

    async def _to_any(
        self, request: Request, forward: Callable[[Upstream], Awaitable[httpx.Response]]
    ) -> httpx.Response | Response:
        """To the next replica that answers; remembers the sessions and episodes it opens.

        A request that may open an MCP session goes to the replica holding fewest sessions
        (round robin alone would send every client's opening request to the same replica
        when clients make an even number of requests before it, as dual-era ones do).
        """
        replicas = self.replicas.rotation()
        if is_environment_mcp(request.url.path):
            replicas.sort(key=self.sessions.held_by)  # stable: ties keep the rotation
        for upstream in replicas:
            try:
                response = await forward(upstream)
            except _UNREACHABLE:
                log.warning("envhost replica %s does not answer; trying another", upstream.url)
                continue
            if session_id := response.headers.get(SESSION_HEADER):
                self.sessions.put(session_id, upstream)
            location = response.headers.get("location")
            path = request.url.path
            if episode_id := created_episode(request.method, path, response.status_code, location):
                self.owners.put(episode_id, upstream)
            return response
        return unavailable("no envhost replica answers")

    async def health(self, _: Request) -> JSONResponse:
        """The gateway's own health: the replicas it sees, and how many answer ``/healthz``."""
        replicas = self.replicas.current()

        async def answers(upstream: Upstream) -> bool:
            try:
                response = await self.client.get(
                    f"{upstream.url}/healthz", headers={"host": upstream.host}, timeout=2.0
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        answering = sum(await asyncio.gather(*(answers(r) for r in replicas)))
        healthy = answering > 0
        body = {
            "status": "ok" if healthy else "unavailable",
            "service": "envhost-gateway",
            "version": __version__,
            "replicas": len(replicas),
            "replicas_answering": answering,
            "episodes_known": len(self.owners),
            "sessions_known": len(self.sessions),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)


def upstream_headers(request: Request) -> list[tuple[str, str]]:
    """The client's headers for a replica: hop-by-hop ones dropped, X-Forwarded-* set."""
    named_hops = {
        token.strip().lower() for token in request.headers.get("connection", "").split(",")
    }
    headers = [
        (name, value)
        for name, value in request.headers.items()
        if name not in _NOT_FORWARDED and name not in named_hops
    ]
    client = request.client.host if request.client else None
    chain = [v for v in (request.headers.get("x-forwarded-for"), client) if v]
    if chain:
        headers.append(("x-forwarded-for", ", ".join(chain)))
    if host := request.headers.get("host"):
        headers.append(("x-forwarded-host", host))
    headers.append(("x-forwarded-proto", request.url.scheme))
    return headers


async def relay(response: httpx.Response, receive: Receive, send: Send) -> None:
    """Stream a replica's answer to the client as it arrives, until either end leaves."""
    named_hops = {t.strip().lower() for t in response.headers.get("connection", "").split(",")}
    headers = [
        (name, value)
        for name, value in response.headers.raw
        if name.decode("latin-1").lower() not in _HOP_BY_HOP | named_hops
    ]
    pump: asyncio.Task[None] | None = None
    watch = asyncio.create_task(_until_disconnect(receive))
    try:
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        pump = asyncio.create_task(_pump(response, send))
        await asyncio.wait([pump, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watch):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (pump, watch) if t is not None), return_exceptions=True)
        await response.aclose()
    if pump.done() and not pump.cancelled() and not watch.done():
        pump.result()  # a failure of our own, not a client that left


async def _pump(response: httpx.Response, send: Send) -> None:
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError as exc:
        # the status is sent: all that is left is to end the response early (the connection
        # closes, so the client sees the answer broken off)
        log.warning("envhost answer broken off: %s: %s", type(exc).__name__, exc)
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=502)


def session_not_found() -> JSONResponse:
    """What MCP prescribes for an unknown session (the client then initializes again)."""
    error = {"code": -32600, "message": "Session not found"}
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=404)


def create_gateway(settings: GatewaySettings) -> Starlette:
    """The gateway app; it resolves the replicas at start and keeps resolving."""
    client = httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=settings.max_upstream_connections, max_keepalive_connections=100
        ),
    )
    for default in ("accept", "accept-encoding", "user-agent"):
        del client.headers[default]  # only what the client sent goes on
    gateway = Gateway(settings, client)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.replicas.refresh()
        resolving = asyncio.create_task(
            gateway.replicas.keep_resolving(settings.resolve_interval_s)
        )
        try:
            yield
        finally:
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resolving
            await client.aclose()

    app = Starlette(
        routes=[Route("/healthz", gateway.health, methods=["GET"]), Route("/{path:path}", gateway)],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


def main() -> None:
    """Entry point: settings from the environment, then serve under uvicorn."""
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        print(f"astra: {settings_error_message(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app: Any = create_gateway(settings)
    # The gateway is the edge: it reports the peer it sees in X-Forwarded-For, never a value
    # a client wrote (uvicorn would take one from loopback peers).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
