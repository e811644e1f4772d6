"""The FastAPI app every service is built on: health, Prometheus metrics, versioned routes."""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astra_common.body_limit import RequestBodyLimitMiddleware
from astra_common.errors import OUTAGE_ERRORS, declare_error_schemas, install_error_handlers
from astra_common.settings import ServiceSettings, settings_error_message

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class StartupError(RuntimeError):
    """The service cannot start as configured; the message says why and what to change."""


HealthCheck = Callable[[], Awaitable[None]]
"""A readiness probe: returns when the dependency is usable, raises otherwise."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@dataclass
class ServiceMetrics:
    """Per-app Prometheus registry (so several apps can live in one process, as in tests)."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, service: str) -> ServiceMetrics:
        """Fresh registry with the HTTP metrics every service exports."""
        registry = CollectorRegistry()
        requests = Counter(
            "astra_http_requests_total",
            "HTTP requests handled.",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        latency = Histogram(
            "astra_http_request_seconds",
            "HTTP request latency.",
            ["service", "method", "route"],
            registry=registry,
        )
        return cls(registry=registry, requests=requests, latency=latency)


class _MetricsMiddleware:
    """Counts requests and times them, labelled by the route template the router matched.

    A plain ASGI middleware: the router records the route it matched in the scope (the same
    dict this middleware holds), so the label costs a lookup, not a second route match.
    """

    def __init__(self, app: ASGIApp, service: str, metrics: ServiceMetrics) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started becomes a 500 outside

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # Label by route template, not raw path, so ids do not explode the label set.
            label = _route_label(scope)
            method = scope["method"]
            self.metrics.requests.labels(self.service, method, label, str(status)).inc()
            self.metrics.latency.labels(self.service, method, label).observe(
                time.perf_counter() - started
            )


def _route_label(scope: Scope) -> str:
    """The full path template of the route the router matched, or ``unmatched``.

    FastAPI 0.16x keeps included routers nested: ``scope["route"]`` is then the route as its
    own router declared it (without the include prefixes), and the full template is in the
    effective route context FastAPI stores in the scope.
    """
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if isinstance(template, str) and template:
        return template
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def closing_lifespan(*closers: Callable[[], Awaitable[Any]]) -> Lifespan:
    """A lifespan that runs nothing at start and awaits ``closers`` in order at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for close in closers:
                await close()

    return lifespan


def bearer_auth(settings: ServiceSettings) -> Callable[..., Awaitable[None]]:
    """A dependency that demands ``Authorization: Bearer <api_token>`` when a token is set."""
    scheme = HTTPBearer(auto_error=False)

    async def check(
        credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
    ) -> None:
        if settings.api_token is None:
            return
        expected = settings.api_token.get_secret_value()
        if credentials is None or not secrets.compare_digest(credentials.credentials, expected):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_service_app(
    *,
    service: str,
    version: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter] = (),
    health_checks: dict[str, HealthCheck] | None = None,
    lifespan: Lifespan | None = None,
    outage_errors: Sequence[type[Exception]] = (),
) -> FastAPI:
    """A FastAPI app with ``/healthz``, ``/metrics`` and ``routers`` mounted under ``/v1``.

    ``/healthz`` answers 200 when every check passes and 503 naming the failing ones.
    Bad input and unavailable dependencies are answered as ``astra_common.errors`` says:
    422 with small bodies, 413 past ``settings.max_request_body_bytes``, 503 for an outage
    (``outage_errors``: a client library's exceptions that may wrap a lost Redis or database
    connection, besides Redis' and SQLAlchemy's own).
    """
    app = FastAPI(
        title=f"astra-{service}",
        version=version,
        lifespan=lifespan,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    install_error_handlers(app, (*OUTAGE_ERRORS, *outage_errors))
    plain_openapi = app.openapi

    def openapi_with_errors() -> dict[str, Any]:
        return declare_error_schemas(plain_openapi())

    app.openapi = openapi_with_errors  # type: ignore[method-assign]
    metrics = ServiceMetrics.create(service)
    app.state.metrics = metrics
    app.state.settings = settings
    app.add_middleware(RequestBodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(_MetricsMiddleware, service=service, metrics=metrics)  # outermost
    checks = dict(health_checks or {})

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness and readiness of the service",
        responses={
            503: {
                "description": "A dependency check failed; the same body names it",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def healthz(response: Response) -> dict[str, Any]:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # a failing dependency is reported, not raised
                results[name] = f"error: {type(exc).__name__}: {exc}"
        healthy = all(value == "ok" for value in results.values())
        response.status_code = 200 if healthy else 503
        return {
            "status": "ok" if healthy else "unavailable",
            "service": service,
            "version": version,
            "checks": results,
        }

    @app.get(
        "/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse
    )
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/info", tags=["ops"], summary="What this service is and how it is configured")
    async def info() -> dict[str, Any]:
        return {
            "service": service,
            "version": version,
            "environment": settings.environment,
            "auth_required": settings.api_token is not None,
        }

    for router in routers:
        app.include_router(router, prefix="/v1")
    return app


def load_settings(settings_type: type[SettingsT]) -> SettingsT:
    """Settings from the environment; exits with one readable line (code 2) when invalid."""
    try:
        return settings_type()
    except ValidationError as exc:
        print(f"astra: {settings_error_message(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def configure_logging(settings: ServiceSettings) -> None:
    """One log format for every service process."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(settings_type: type[SettingsT], create_app: Callable[[SettingsT], FastAPI]) -> None:
    """Entry point body: load settings, build the app, serve it under uvicorn."""
    settings = load_settings(settings_type)
    configure_logging(settings)
    try:
        app = create_app(settings)
    except StartupError as exc:
        print(f"astra: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
