"""The base of every service client: one async HTTP client, contract models in and out, and
errors a person can read.

A service client is a thin class over ``ServiceClient`` whose methods take and return the
models of ``astra_proto.api.<service>``; nothing outside the clients builds request JSON by
hand, so a renamed contract field is a type error at every caller.

```python
async with RolloutClient("http://127.0.0.1:8102", token=token) as rollout:
    status = await rollout.start_batch(BatchRequest(...))
```

Reads (``GET``) are retried on transport faults and retryable statuses (the shared HTTP
retry policy); writes are sent once, since a repeated ``POST`` may do its work twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from astra_common.retry import (
    HttpRetriesExhausted,
    HttpRetryPolicy,
    RetryableReply,
    is_retryable_status,
    retry_http,
)

T = TypeVar("T")

READ_RETRIES = HttpRetryPolicy(retries=3, backoff_s=0.5, max_backoff_s=4.0)
"""How a read is repeated after a transport fault or a retryable status."""


class ServiceError(RuntimeError):
    """A service refused or failed a request. ``status`` is the HTTP status (0: no answer);
    ``detail`` the service's own message; ``str()`` is one readable line."""

    def __init__(self, message: str, *, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class ServiceUnreachable(ServiceError):
    """No answer at all: the service is down, or the URL is wrong."""


class ServiceClient:
    """Async JSON client for one service. Subclasses add one typed method per route."""

    service = "service"
    """The service's name, used in error messages."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, when this client made it."""
        if self._owns_http:
            await self._http.aclose()

    # --- typed requests -----------------------------------------------------------------------

    async def get(
        self,
        path: str,
        answer: type[T],
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> T:
        """``GET path``, the answer validated as ``answer``; retried on transient faults."""
        query = {k: v for k, v in (params or {}).items() if v is not None}

        async def once() -> httpx.Response:
            reply = await self._send("GET", path, params=query, timeout_s=timeout_s)
            if reply.status_code >= 400 and is_retryable_status(reply.status_code):
                raise RetryableReply(f"HTTP {reply.status_code}", reply)
            return reply

        what = f"GET {self.base_url}{path}"
        try:
            reply = (await retry_http(once, policy=READ_RETRIES, what=what)).value
        except HttpRetriesExhausted as exhausted:
            last = exhausted.last_error
            if isinstance(last, RetryableReply) and isinstance(last.reply, httpx.Response):
                reply = last.reply
            else:
                raise self._unreachable("GET", path, last) from None
        return self._answer("GET", path, reply, answer)

    @asynccontextmanager
    async def stream(
        self, path: str, *, timeout_s: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """``GET path`` with the body left unread, for large files: the reply once it answered
        200 (any other status raises ``ServiceError`` with the service's message). Sent once;
        a transport fault, also while the body is read, raises ``ServiceUnreachable``."""
        try:
            async with self._http.stream(
                "GET",
                f"{self.base_url}{path}",
                headers=self._headers,
                timeout=self._timeout_s if timeout_s is None else timeout_s,
            ) as reply:
                if reply.status_code != 200:
                    await reply.aread()
                    raise self._refused("GET", path, reply)
                yield reply
        except httpx.TransportError as error:
            raise self._unreachable("GET", path, error) from None

    async def post(
        self,
        path: str,
        answer: type[T],
        body: BaseModel | None = None,
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        expect: tuple[int, ...] = (200, 201, 202),
    ) -> T:
        """``POST path`` with ``body`` (a contract model, or none), sent once."""
        return await self.send(
            "POST", path, answer, body, params=params, timeout_s=timeout_s, expect=expect
        )

    async def send(
        self,
        method: str,
        path: str,
        answer: type[T],
        body: BaseModel | None = None,
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> T:
        """Any method, sent once; the answer validated as ``answer`` (``type(None)``: ignored)."""
        content = body.model_dump_json(exclude_unset=False).encode() if body is not None else None
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            reply = await self._send(
                method, path, params=query, content=content, timeout_s=timeout_s
            )
        except httpx.TransportError as error:
            raise self._unreachable(method, path, error) from None
        return self._answer(method, path, reply, answer, expect=expect)

    # --- plumbing -----------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any],
        content: bytes | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return await self._http.request(
            method,
            f"{self.base_url}{path}",
            params=params,
            content=content,
            headers=headers,
            timeout=self._timeout_s if timeout_s is None else timeout_s,
        )

    def _unreachable(self, method: str, path: str, error: BaseException) -> ServiceUnreachable:
        if isinstance(error, httpx.ConnectError):
            why = "connection refused or no such host"
        else:
            why = f"{type(error).__name__}: {error}".rstrip(": ")
        return ServiceUnreachable(
            f"cannot reach {self.service} at {self.base_url} ({method} {path}: {why})"
        )

    def _refused(self, method: str, path: str, reply: httpx.Response) -> ServiceError:
        detail = error_detail(reply)
        return ServiceError(
            f"{self.service}: {method} {path} answered {reply.status_code}: {detail}",
            status=reply.status_code,
            detail=detail,
        )

    def _answer(
        self,
        method: str,
        path: str,
        reply: httpx.Response,
        answer: type[T],
        *,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> T:
        if reply.status_code not in expect:
            raise self._refused(method, path, reply)
        if answer is type(None):
            return None
        try:
            return TypeAdapter(answer).validate_json(reply.content)
        except ValidationError as error:
            raise ServiceError(
                f"{self.service}: {method} {path} answered a body that is not a valid "
                f"{getattr(answer, '__name__', answer)}: {_first_error(error)}",
                status=reply.status_code,
            ) from None


def error_detail(reply: httpx.Response) -> str:
    """A failed reply's message on one line: FastAPI's ``detail`` (validation errors joined
    as ``field: message``), else the body text, at most 500 characters."""
    try:
        detail: Any = reply.json().get("detail", reply.text)
    except (ValueError, AttributeError):
        detail = reply.text
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if not isinstance(error, dict):
                parts.append(str(error))
                continue
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        detail = "; ".join(parts)
    return " ".join(str(detail).split())[:500]


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
