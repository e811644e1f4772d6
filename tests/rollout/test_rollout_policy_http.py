"""The policy client's lean HTTP/1.1 path against a real loopback server scripted byte by byte.

Each test's server answers every request with what its script writes, so keep-alive reuse,
connections the server closes, chunked and gzip bodies, timeouts and retries are seen on real
sockets, as ``PolicyClient.complete`` meets them. The tests of what a caller sees (replies,
connections, retries, errors) run both ways: over the lean pool and through httpx
(``direct_http=False``), with a probe that the chosen way served the requests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import astra_rollout.policy_http
from astra_common.library_guard import LibraryGuard
from astra_proto import Message
from astra_proto.api.rollout import PolicyEndpoint, SamplingParams
from astra_rollout.app import create_app
from astra_rollout.policy import PolicyClient, PolicyError
from astra_rollout.policy_http import HTTPX_GUARD, ConnectionPool
from astra_rollout.settings import RolloutSettings

MESSAGES = [Message(role="user", content="Say hi. ✓")]
SAMPLING = SamplingParams(max_tokens=8)
REPLY = {
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


@dataclass
class Request:
    """One request as the server read it."""

    connection: int
    head: list[str]
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None


Script = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request; returns whether to keep reading the connection."""


@dataclass
class Server:
    url: str
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


def response(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def ok(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(response(json.dumps(REPLY).encode()))
    return True


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Server]:
    server_state = Server(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.connections += 1
        number = server_state.connections
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except asyncio.IncompleteReadError:
                    server_state.closed_by_client.set()
                    return
                request = Request(number, head.split("\r\n")[:-2], b"")
                request.body = await reader.readexactly(int(request.header("content-length") or 0))
                server_state.requests.append(request)
                keep = await script(request, writer)
                await writer.drain()
                if not keep:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_state.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server_state
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Way:
    """How the policy client posts (``direct``: over the lean pool), and the request bodies
    the lean pools of the test were given (the probe of which way served)."""

    direct: bool
    lean_posts: list[bytes]


@pytest.fixture
def lean_posts(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The request bodies any lean pool of this test was given."""
    posted: list[bytes] = []
    post = ConnectionPool.post

    async def counted(self: ConnectionPool, content: bytes, timeout_s: float) -> Any:
        posted.append(content)
        return await post(self, content, timeout_s)

    monkeypatch.setattr(ConnectionPool, "post", counted)
    return posted


@pytest.fixture(params=[True, False], ids=["lean", "httpx"])
def way(request: pytest.FixtureRequest, lean_posts: list[bytes]) -> Way:
    """Each test that takes it runs over the lean pool and through httpx."""
    return Way(direct=request.param, lean_posts=lean_posts)


@asynccontextmanager
async def policy(
    server: Server, way: Way | None = None, **overrides: Any
) -> AsyncIterator[PolicyClient]:
    """A policy client of ``server``; with ``way``, posting that way, checked on leaving.

    The shared httpx client gets the pool's connection cap and idle expiry, so both ways are
    configured alike."""
    values: dict[str, Any] = {"retries": 2, "backoff_s": 0.01, "timeout_s": 5.0}
    values |= overrides
    if way is not None:
        values["direct_http"] = way.direct
    limits = httpx.Limits(
        max_connections=values.get("max_connections", 1024),
        keepalive_expiry=values.get("keepalive_expiry_s", 4.0),
    )
    async with httpx.AsyncClient(limits=limits) as http:
        client = PolicyClient(http=http, base_url=server.url, model="m", api_key="k", **values)
        posted_before = len(way.lean_posts) if way is not None else 0
        try:
            yield client
        finally:
            await client.aclose()
        if way is not None:  # the test passed: it went the way it was meant to
            assert (len(way.lean_posts) > posted_before) == way.direct


async def complete(client: PolicyClient) -> str | None:
    async with asyncio.timeout(30):
        completion = await client.complete(MESSAGES, [], SAMPLING)
    return completion.message.content


async def test_requests_share_one_keep_alive_connection_and_match_httpx(
    lean_posts: list[bytes],
) -> None:
    async with serving(ok) as server, policy(server, Way(True, lean_posts)) as client:
        assert [await complete(client) for _ in range(3)] == ["hi"] * 3
        assert server.connections == 1
        async with policy(server, Way(False, lean_posts)) as over_httpx:
            await complete(over_httpx)
    lean, plain = server.requests[0], server.requests[-1]
    assert lean.head[0] == plain.head[0] == "POST /v1/chat/completions HTTP/1.1"
    assert lean.body == plain.body  # the same JSON bytes as httpx's json=
    assert json.loads(lean.body)["messages"] == [{"role": "user", "content": "Say hi. ✓"}]
    for name in ("host", "content-type", "content-length", "authorization", "user-agent"):
        assert lean.header(name) == plain.header(name), name


async def test_chunked_and_gzip_bodies_are_read_across_writes(way: Way) -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        body = json.dumps(REPLY).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 7):
            piece = body[start : start + 7]
            writer.write(f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\nx-trailer: yes\r\n\r\n")
        return True

    async def gzipped(request: Request, writer: asyncio.StreamWriter) -> bool:
        body = gzip.compress(json.dumps(REPLY).encode())
        writer.write(response(body, headers="content-encoding: gzip\r\n"))
        return True

    for script in (chunked, gzipped):
        async with serving(script) as server, policy(server, way) as client:
            assert [await complete(client) for _ in range(2)] == ["hi", "hi"]
            assert server.connections == 1


async def test_connection_close_and_closed_idle_connections_mean_a_new_connection(way: Way) -> None:
    async def close_after(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(json.dumps(REPLY).encode(), headers="connection: close\r\n"))
        return False

    async def quietly_close_after(request: Request, writer: asyncio.StreamWriter) -> bool:
        await ok(request, writer)
        return False  # the socket closes with no header saying so

    for script in (close_after, quietly_close_after):
        async with serving(script) as server, policy(server, way) as client:
            for _ in range(3):
                async with asyncio.timeout(30):
                    completion = await client.complete(MESSAGES, [], SAMPLING)
                assert completion.attempts == 1
            assert server.connections == 3


async def test_reused_connection_closed_before_answering_is_resent_once(way: Way) -> None:
    async def drop_second(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 1 and len(server.requests) == 2:
            return False  # read the request, then close: a keep-alive timeout crossing it
        return await ok(request, writer)

    attempts = []
    async with serving(drop_second) as server, policy(server, way) as client:
        for _ in range(3):
            async with asyncio.timeout(30):
                completion = await client.complete(MESSAGES, [], SAMPLING)
            attempts.append(completion.attempts)
        assert server.connections == 2
        assert len(server.requests) == 4  # the dropped one, sent again
    # The lean pool resends it at once; httpx raises, and the client's retry policy resends it.
    assert attempts == ([1, 1, 1] if way.direct else [1, 2, 1])


async def test_body_without_length_is_read_until_close(way: Way) -> None:
    async def until_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
        writer.write(json.dumps(REPLY).encode())
        return False

    async with serving(until_close) as server, policy(server, way) as client:
        assert [await complete(client) for _ in range(2)] == ["hi", "hi"]
        assert server.connections == 2


async def test_server_errors_are_retried_and_other_4xx_refused(way: Way) -> None:
    async def busy_once(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            writer.write(response(b'{"error": "busy"}', "503 Service Unavailable"))
            return True
        return await ok(request, writer)

    async with serving(busy_once) as server, policy(server, way) as client:
        async with asyncio.timeout(30):
            completion = await client.complete(MESSAGES, [], SAMPLING)
        assert completion.attempts == 2
        assert server.connections == 1

    async def bad_request(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(b'{"error": "unknown field"}', "400 Bad Request"))
        return True

    async with serving(bad_request) as server, policy(server, way) as client:
        with pytest.raises(PolicyError, match=r"refused the request: HTTP 400: .*unknown field"):
            await complete(client)
        assert len(server.requests) == 1


async def test_silent_server_times_out_and_is_retried(way: Way) -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with serving(silent) as server, policy(server, way, timeout_s=0.2, retries=1) as client:
        with pytest.raises(PolicyError, match="after 2 attempts: ReadTimeout"):
            await complete(client)
        assert len(server.requests) == 2


async def test_body_cut_short_is_a_transport_error(way: Way) -> None:
    async def cut(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(json.dumps(REPLY).encode())[:-5])
        return False

    async with serving(cut) as server, policy(server, way) as client:
        with pytest.raises(PolicyError, match="after 3 attempts: RemoteProtocolError: peer closed"):
            await complete(client)
        assert server.connections == 3


async def test_refused_connection_is_a_connect_error(way: Way) -> None:
    async with serving(ok) as server:
        pass  # closed again: nothing listens on its port now
    async with policy(server, way, retries=1) as client:
        with pytest.raises(PolicyError, match="after 2 attempts: ConnectError"):
            await complete(client)


async def test_connections_are_capped_and_requests_wait_for_one(way: Way) -> None:
    async def slow(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        return await ok(request, writer)

    async with serving(slow) as server, policy(server, way, max_connections=2) as client:
        async with asyncio.timeout(30):
            replies = await asyncio.gather(*(complete(client) for _ in range(6)))
        assert replies == ["hi"] * 6
        assert server.connections == 2


async def test_aclose_closes_idle_connections_and_later_requests_open_new_ones() -> None:
    async with serving(ok) as server, policy(server) as client:
        await complete(client)
        await client.aclose()
        async with asyncio.timeout(10):
            await server.closed_by_client.wait()
        assert await complete(client) == "hi"
        assert server.connections == 2


async def test_clients_with_their_own_transport_keep_going_through_httpx() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=REPLY)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = PolicyClient(http=http, base_url="http://policy.invalid/v1", model="m")
        assert (await client.complete(MESSAGES, [], SAMPLING)).message.content == "hi"
    assert [str(r.url) for r in seen] == ["http://policy.invalid/v1/chat/completions"]


async def test_idle_connections_close_after_the_keepalive_expiry() -> None:
    async with serving(ok) as server, policy(server, keepalive_expiry_s=0.05) as client:
        await complete(client)
        async with asyncio.timeout(10):
            await server.closed_by_client.wait()
        assert await complete(client) == "hi"
        assert server.connections == 2


async def test_a_closed_shared_client_refuses_as_before(way: Way) -> None:
    async with serving(ok) as server, policy(server, way) as client:
        await complete(client)
        await client.http.aclose()
        with pytest.raises(RuntimeError, match="client has been closed"):
            await complete(client)


async def test_the_setting_reaches_the_policy_clients_of_the_service(
    way: Way, redis_url: str
) -> None:
    """``ASTRA_ROLLOUT_POLICY_DIRECT_HTTP`` decides the way of the clients batches,
    evaluations and teacher runs use."""
    app = create_app(RolloutSettings(redis_url=redis_url, policy_direct_http=way.direct))
    async with app.router.lifespan_context(app), serving(ok) as server:
        client = app.state.batches.policy_client(PolicyEndpoint(base_url=server.url, model="m"))
        try:
            assert await complete(client) == "hi"
        finally:
            await client.aclose()
    assert bool(way.lean_posts) == way.direct


def test_the_installed_httpx_is_the_tested_one() -> None:
    """The lean pool is used by default only where the pinned httpx is the tested one."""
    assert HTTPX_GUARD.allows()


async def test_an_untested_httpx_version_keeps_requests_on_httpx_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lean_posts: list[bytes]
) -> None:
    guard = LibraryGuard(
        HTTPX_GUARD.tested,
        what=HTTPX_GUARD.what,
        setting=HTTPX_GUARD.setting,
        version_of=lambda distribution: "0.29.0",  # the version lookup's unit test double
    )
    monkeypatch.setattr(astra_rollout.policy_http, "HTTPX_GUARD", guard)
    with caplog.at_level(logging.WARNING, logger="astra.library_guard"):
        async with serving(ok) as server:
            for _ in range(2):  # two clients (as two batches): one warning
                async with policy(server) as client:  # direct_http on, as by default
                    assert await complete(client) == "hi"
    assert lean_posts == []  # httpx served both
    assert len(server.requests) == 2
    [record] = caplog.records
    message = record.getMessage()
    for part in ("httpx==0.28.1", "version 0.29.0", "ASTRA_ROLLOUT_POLICY_DIRECT_HTTP"):
        assert part in message, part
