"""A lean keep-alive HTTP/1.1 client for the policy's plain ``http://`` endpoints.

At 256 episodes in flight, httpcore's connection pool spends most of the rollout's CPU scanning
its connections on every request and response (``AsyncConnectionPool._assign_requests_to_
connections`` probes each idle socket). ``ConnectionPool`` keeps a LIFO list of idle
connections (an ``asyncio.Protocol`` each) and scans nothing. It sends the bytes ``httpx``
would (its default headers, the same JSON encoding) and raises ``httpx``'s own exception types,
so the policy client's retries, timeouts and error messages do not change. It handles
Content-Length, chunked (with trailers) and read-until-close bodies, gzip/deflate, 1xx
responses, a cap on connections and idle expiry; a reused idle connection that the server
closed before answering is retried once on a fresh one.

The pool mirrors httpx's request bytes and exceptions and reads private httpx attributes, so it
is used only with the httpx version it was tested against (``HTTPX_GUARD``): on any other,
``bypasses_nothing`` answers False, with one warning, and every request goes through httpx.
``ASTRA_ROLLOUT_POLICY_DIRECT_HTTP=false`` (the client's ``direct_http``) turns it off outright.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from astra_common.library_guard import LibraryGuard

HTTPX_GUARD = LibraryGuard(
    {"httpx": "==0.28.1"},
    what="the rollout's direct HTTP/1.1 pool for policy endpoints",
    setting="ASTRA_ROLLOUT_POLICY_DIRECT_HTTP",
)
"""The httpx versions whose request bytes, exception types and private attributes the pool
was tested against."""


def encode_json(body: dict[str, Any]) -> bytes:
    """``body`` as ``httpx`` encodes ``json=``: compact, UTF-8, no NaN (ValueError)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def bypasses_nothing(http: httpx.AsyncClient, url: httpx.URL) -> bool:
    """Whether posting to ``url`` past ``http`` skips nothing it would have done: httpx at a
    tested version (``HTTPX_GUARD``), a plain ``http://`` URL without credentials, and a client
    on its default transport (no mock or ASGI transport, no proxy for the URL) with no auth,
    params or event hooks."""
    if not HTTPX_GUARD.allows():
        return False
    transport = http._transport  # httpx has no public accessor for these
    return (
        url.scheme == "http"
        and not url.userinfo
        and type(transport) is httpx.AsyncHTTPTransport
        and http._transport_for_url(url) is transport
        and http.auth is None
        and not http.params
        and not any(http.event_hooks.values())
    )


_MAX_HEAD = 64 * 1024
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 1, 2, 3
_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_TRAILER = 1, 2, 3


class _ProtocolViolation(Exception):
    """The server's bytes are not an HTTP/1.1 response."""


@dataclass(slots=True)
class RawResponse:
    """A response of the lean path: what ``complete`` reads of an ``httpx.Response``."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def text(self) -> str:
        """The body decoded as ``httpx`` does: the charset of Content-Type, else UTF-8."""
        charset = "utf-8"
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one exchange at a time, parsed as bytes arrive.

    A timer fails the exchange with ``ReadTimeout`` (``WriteTimeout`` while the request is
    still being sent) after ``timeout_s`` seconds without progress, as ``httpx`` times each read.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = False
        self.idle_since = 0.0
        self.exchanges = 0
        self.received_any = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[RawResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._last_progress = 0.0
        self._paused = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        self._framing = 0
        self._length = 0
        self._chunk_state = _CHUNK_SIZE
        self._chunk_at = 0
        self._chunk_size = 0
        self._chunks: list[bytes] = []

    async def exchange(self, request: bytes, timeout_s: float) -> RawResponse:
        """Send ``request`` and read its response; the caller closes the connection if this
        raises, and may reuse it if the response keeps it alive."""
        assert self.transport is not None, "exchange before connection_made"
        self.exchanges += 1
        self.received_any = False
        self._status = 0
        self._framing = 0
        self._buffer.clear()
        waiter: asyncio.Future[RawResponse] = self.loop.create_future()
        self._waiter = waiter
        self._timeout = timeout_s
        self._last_progress = self.loop.time()
        self._timer = self.loop.call_later(timeout_s, self._check_progress)
        try:
            self.transport.write(request)
            return await waiter
        finally:
            self._timer.cancel()
            self._waiter = None

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes outside an exchange: not to be trusted
            self.close()
            return
        self.received_any = True
        self._last_progress = self.loop.time()
        self._buffer += data
        try:
            response = self._parse()
        except _ProtocolViolation as exc:
            waiter.set_exception(httpx.RemoteProtocolError(str(exc)))
            self.close()
        except httpx.DecodingError as exc:
            waiter.set_exception(exc)
            self.close()
        else:
            if response is not None:
                waiter.set_result(response)

    def eof_received(self) -> bool:
        return False  # let the transport close: connection_lost settles any exchange

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._status and self._framing == _UNTIL_CLOSE:
                self._keep_alive = False
                try:
                    waiter.set_result(self._response(bytes(self._buffer)))
                except httpx.DecodingError as error:
                    waiter.set_exception(error)
            elif not self.received_any:
                waiter.set_exception(
                    httpx.RemoteProtocolError("Server disconnected without sending a response.")
                )
            else:
                waiter.set_exception(
                    httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body"
                    )
                )
        if not self.closed:
            self.closed = True
            self.pool.forget(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._last_progress = self.loop.time()

    # -- internals ------------------------------------------------------------------------

    def _check_progress(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        quiet = self.loop.time() - self._last_progress
        if quiet < self._timeout:
            self._timer = self.loop.call_later(self._timeout - quiet, self._check_progress)
            return
        error = httpx.WriteTimeout if self._paused else httpx.ReadTimeout
        waiter.set_exception(error(f"no progress for {self._timeout:g} s"))
        self.close()

    def _parse(self) -> RawResponse | None:
        buffer = self._buffer
        while not self._status:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise _ProtocolViolation("response head too long")
                return None
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._read_head(head)
        if self._framing == _LENGTH:
            if len(buffer) < self._length:
                return None
            if len(buffer) > self._length:  # bytes past the response: do not reuse
                self._keep_alive = False
            return self._response(bytes(buffer[: self._length]))
        if self._framing == _CHUNKED:
            return self._parse_chunks()
        return None  # until the server closes

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise _ProtocolViolation(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _ProtocolViolation(f"malformed header line: {line[:100]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200 and status != 101:
            return  # an interim response (100 Continue): the real one follows
        self._status = status
        self._headers = headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        self._keep_alive = (
            "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        )
        self._chunks = []
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._framing = _CHUNKED
            self._chunk_state, self._chunk_at = _CHUNK_SIZE, 0
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise _ProtocolViolation("malformed Content-Length") from None
            if self._length < 0:
                raise _ProtocolViolation("malformed Content-Length")
            self._framing = _LENGTH
        elif status in (101, 204, 304):
            self._framing, self._length = _LENGTH, 0
        else:
            self._framing = _UNTIL_CLOSE
            self._keep_alive = False

    def _parse_chunks(self) -> RawResponse | None:
        buffer = self._buffer
        while True:
            at = self._chunk_at
            if self._chunk_state == _CHUNK_DATA:
                end = at + self._chunk_size
                if len(buffer) < end + 2:
                    return None
                if buffer[end : end + 2] != b"\r\n":
                    raise _ProtocolViolation("chunk not followed by CRLF")
                self._chunks.append(bytes(buffer[at:end]))
                self._chunk_at, self._chunk_state = end + 2, _CHUNK_SIZE
                continue
            eol = buffer.find(b"\r\n", at)
            if eol < 0:
                if len(buffer) - at > _MAX_HEAD:
                    raise _ProtocolViolation("chunk header too long")
                return None
            line = bytes(buffer[at:eol])
            self._chunk_at = eol + 2
            if self._chunk_state == _CHUNK_TRAILER:
                if line:
                    continue  # a trailer field: ignored, as httpx does
                if len(buffer) > eol + 2:
                    self._keep_alive = False
                return self._response(b"".join(self._chunks))
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ProtocolViolation(f"malformed chunk size {line[:40]!r}") from None
            if size < 0:
                raise _ProtocolViolation(f"malformed chunk size {line[:40]!r}")
            if size == 0:
                self._chunk_state = _CHUNK_TRAILER
            else:
                self._chunk_state, self._chunk_size = _CHUNK_DATA, size

    def _response(self, body: bytes) -> RawResponse:
        encoding = self._headers.get("content-encoding", "").lower()
        for coding in reversed([c.strip() for c in encoding.split(",") if c.strip()]):
            if coding in ("gzip", "x-gzip", "deflate"):
                body = _decompress(body, coding)
        return RawResponse(self._status, self._headers, body)


def _decompress(body: bytes, coding: str) -> bytes:
    """gzip or deflate content as ``httpx`` decodes it (deflate: zlib-wrapped, or raw)."""
    try:
        if coding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        return zlib.decompress(body, zlib.MAX_WBITS | 16)
    except zlib.error as exc:
        raise httpx.DecodingError(str(exc)) from None


class ConnectionPool:
    """Keep-alive connections to one ``http://`` URL, reused most-recent first.

    At most ``max_connections`` are open; a request past that waits for one, up to its
    timeout (``httpx.PoolTimeout``). Idle ones close after ``keepalive_expiry_s``. A request
    that finds its reused connection closed by the server before any byte came back (the
    server's keep-alive timeout crossing the request) is sent once more on a new connection.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        *,
        max_connections: int,
        keepalive_expiry_s: float,
    ) -> None:
        self.loop = loop
        self.host = url.host
        self.port = url.port or 80
        merged = {k.lower(): (k, v) for k, v in headers}  # later ones win, as in httpx
        merged.pop(b"host", None)
        merged.setdefault(b"content-type", (b"Content-Type", b"application/json"))
        lines = [b"POST " + url.raw_path + b" HTTP/1.1", b"Host: " + url.netloc]
        lines += [k + b": " + v for k, v in merged.values()]
        self._head = b"\r\n".join(lines) + b"\r\nContent-Length: "
        self._max_connections = max_connections
        self._expiry = keepalive_expiry_s
        self._open = 0
        self._idle: list[_Connection] = []  # oldest first
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(self, content: bytes, timeout_s: float) -> RawResponse:
        """POST ``content`` (JSON); raises ``httpx.TransportError`` subclasses as httpx does."""
        request = b"%s%d\r\n\r\n%s" % (self._head, len(content), content)
        connection = await self._acquire(timeout_s, fresh=False)
        try:
            return await self._exchange(connection, request, timeout_s)
        except httpx.RemoteProtocolError:
            if connection.exchanges < 2 or connection.received_any:
                raise
        connection = await self._acquire(timeout_s, fresh=True)
        return await self._exchange(connection, request, timeout_s)

    def close(self) -> None:
        """Close every idle connection, and the others as their exchanges end."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def forget(self, connection: _Connection) -> None:
        """``connection`` is closed: its place may go to a waiting request."""
        if connection.counted:
            connection.counted = False
            self._open -= 1
            self._wake()

    async def _exchange(
        self, connection: _Connection, request: bytes, timeout_s: float
    ) -> RawResponse:
        try:
            response = await connection.exchange(request, timeout_s)
        except BaseException:
            connection.close()
            raise
        if connection.reusable and not self._closed:
            connection.idle_since = self.loop.time()
            self._idle.append(connection)
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(self._expiry, self._sweep)
            self._wake()
        else:
            connection.close()
        return response

    async def _acquire(self, timeout_s: float, *, fresh: bool) -> _Connection:
        deadline: float | None = None
        while True:
            if self._closed:
                raise RuntimeError("Cannot send a request, as the policy client has been closed.")
            now = self.loop.time()
            while self._idle and not fresh:
                connection = self._idle.pop()
                if connection.closed:
                    continue
                if now - connection.idle_since < self._expiry:
                    return connection
                connection.close()
            if fresh and self._open >= self._max_connections and self._idle:
                self._idle.pop(0).close()  # make room for the new connection
            if self._open < self._max_connections:
                return await self._connect(timeout_s)
            deadline = now + timeout_s if deadline is None else deadline
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving: the turn goes to the next in line
                waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(f"no free connection within {timeout_s:g} s") from None
                raise

    async def _connect(self, timeout_s: float) -> _Connection:
        self._open += 1
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except BaseException as exc:
            self._open -= 1
            self._wake()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"connect took over {timeout_s:g} s") from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc)) from None
            raise
        connection.counted = True
        if connection.closed:  # lost between connecting and now
            self.forget(connection)
            raise httpx.ConnectError("connection closed as it opened")
        return connection

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        kept = []
        for connection in self._idle:
            if connection.closed:
                continue
            if now - connection.idle_since >= self._expiry:
                connection.close()
            else:
                kept.append(connection)
        self._idle = kept
        if kept:
            delay = self._expiry - (now - kept[0].idle_since)
            self._sweeper = self.loop.call_later(max(delay, 0.05), self._sweep)
