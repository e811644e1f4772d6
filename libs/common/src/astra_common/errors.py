"""How every service answers bad input and unavailable dependencies.

- A request that fails validation gets 422 with ``detail`` as a list of errors (FastAPI's
  shape), each with ``type``, ``loc`` and ``msg``; the offending ``input`` is kept only when it
  is small, and every string is cut, so an error body never copies a large request back.
- A route's own ``HTTPException`` keeps its status; a string ``detail`` longer than
  ``MAX_DETAIL_CHARS`` is cut. The OpenAPI document declares what is sent: a 422 ``detail`` is
  either the list or one string (routes that reject a value after validation say why in words).
- A database or Redis outage (``astra_common.retry.is_transient``) is 503 with a message naming
  the dependency, not a 500. A value the database refuses (PostgreSQL takes no NUL character in
  text or JSON; integers have a range) is 422.
- A request body over the service's ``max_request_body_bytes`` is 413
  (``astra_common.body_limit`` counts the bytes while they arrive).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from astra_common.retry import is_transient

logger = logging.getLogger("astra.errors")

MAX_DETAIL_CHARS = 2_000
"""Longest string ``detail`` of an error body; longer ones are cut."""

MAX_ECHOED_INPUT_CHARS = 200
"""Largest offending input (as JSON) a validation error repeats; larger ones are left out."""

MAX_ERROR_MESSAGE_CHARS = 500
"""Longest message of one validation error."""

MAX_ERROR_FIELD_CHARS = 200
"""Longest location part or context value of one validation error."""

MAX_VALIDATION_ERRORS = 50
"""Validation errors listed at most; the rest are counted in one last entry."""


class ErrorBody(BaseModel):
    """An error answered by a service: what went wrong, in words."""

    detail: str


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _small_json(value: Any, limit: int) -> Any | None:
    """``value`` made JSON-safe when its JSON text has at most ``limit`` characters, else None."""
    try:
        encoded = jsonable_encoder(value)
        text = json.dumps(encoded)
    except (TypeError, ValueError):
        return None
    return encoded if len(text) <= limit else None


def _context_value(value: Any) -> Any:
    """A bound, pattern or expected value as JSON when it is small, else as cut text."""
    if isinstance(value, BaseException):  # a validator's error: its message
        return _cut(str(value), MAX_ERROR_FIELD_CHARS)
    small = _small_json(value, MAX_ERROR_FIELD_CHARS)
    return small if small is not None else _cut(str(value), MAX_ERROR_FIELD_CHARS)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as sent: small, JSON-safe, never a large input."""
    listed: list[dict[str, Any]] = []
    items = list(errors)
    for error in items[:MAX_VALIDATION_ERRORS]:
        loc = [
            part if isinstance(part, int) else _cut(str(part), MAX_ERROR_FIELD_CHARS)
            for part in error.get("loc", ())
        ]
        entry: dict[str, Any] = {
            "type": _cut(str(error.get("type", "value_error")), MAX_ERROR_FIELD_CHARS),
            "loc": loc,
            "msg": _cut(str(error.get("msg", "invalid")), MAX_ERROR_MESSAGE_CHARS),
        }
        if "input" in error:
            echoed = _small_json(error["input"], MAX_ECHOED_INPUT_CHARS)
            if echoed is not None:
                entry["input"] = echoed
        ctx = error.get("ctx")
        if isinstance(ctx, dict) and ctx:
            entry["ctx"] = {
                _cut(str(key), MAX_ERROR_FIELD_CHARS): _context_value(value)
                for key, value in list(ctx.items())[:10]
            }
        listed.append(entry)
    if len(items) > MAX_VALIDATION_ERRORS:
        listed.append(
            {
                "type": "too_many_errors",
                "loc": [],
                "msg": f"{len(items) - MAX_VALIDATION_ERRORS} more errors not listed",
            }
        )
    return listed


async def request_validation_error(request: Request, exc: Exception) -> Response:
    """422 with ``detail`` as a list of small errors."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)


async def http_error(request: Request, exc: Exception) -> Response:
    """A route's ``HTTPException``: its status and headers, a string detail cut to size."""
    assert isinstance(exc, HTTPException)
    headers = getattr(exc, "headers", None)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    detail: Any = exc.detail
    if isinstance(detail, str):
        detail = _cut(detail, MAX_DETAIL_CHARS)
    elif isinstance(detail, list) and all(isinstance(error, dict) for error in detail):
        detail = validation_errors(detail)  # pydantic's errors, re-raised by a route
    else:
        encoded = _small_json(detail, MAX_DETAIL_CHARS)
        detail = encoded if encoded is not None else _cut(str(detail), MAX_DETAIL_CHARS)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


def _transient_fault(exc: BaseException) -> BaseException | None:
    """The transient fault ``exc`` is or wraps (a client library's error around a lost
    connection, e.g. Celery's around Redis'), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if is_transient(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _dependency_name(fault: BaseException) -> str:
    if isinstance(fault, redis.exceptions.RedisError):
        return "Redis"
    if isinstance(fault, sqlalchemy.exc.SQLAlchemyError):
        return "the database"
    return "a dependency"


async def dependency_unavailable(request: Request, exc: Exception) -> Response:
    """503 for a database or Redis fault that may pass; other errors stay server errors."""
    fault = _transient_fault(exc)
    if fault is None:
        raise exc
    what = _dependency_name(fault)
    logger.warning("%s %s: %s is unavailable: %s", request.method, request.url.path, what, exc)
    return JSONResponse(
        {"detail": f"{what} is unavailable; try again later ({type(fault).__name__})"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def unstorable_value(request: Request, exc: Exception) -> Response:
    """422 for a value the database refuses (a NUL character, a number out of its range)."""
    assert isinstance(exc, sqlalchemy.exc.DataError)
    reason = _cut(str(exc.orig or exc).strip().splitlines()[0], MAX_ERROR_FIELD_CHARS)
    logger.warning(
        "%s %s: the database refused a value: %s", request.method, request.url.path, reason
    )
    detail = f"the database cannot take a value of this request: {reason}"
    return JSONResponse({"detail": detail}, status_code=422)


OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ResponseError,
    sqlalchemy.exc.DBAPIError,
    ConnectionError,
    TimeoutError,
)
"""Exception types whose transient instances are answered with 503."""


def install_error_handlers(
    app: FastAPI, outage_errors: tuple[type[Exception], ...] = OUTAGE_ERRORS
) -> None:
    """Register the handlers above on ``app``; ``outage_errors`` are answered 503 when they
    are or wrap a transient fault (a service adds its client libraries' wrappers)."""
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(sqlalchemy.exc.DataError, unstorable_value)
    for error_type in outage_errors:
        app.add_exception_handler(error_type, dependency_unavailable)


def declare_error_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers send.

    A 422 ``detail`` is a list of validation errors or one string; 413 and 503 bodies are
    ``ErrorBody``. Changes ``openapi`` in place and returns it.
    """
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    # Routes may name ErrorBody in their own responses, so its presence says nothing about
    # whether this ran: each part below is idempotent instead.
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    validation = schemas.get("HTTPValidationError")
    if validation is not None and "anyOf" not in validation["properties"]["detail"]:
        listed = validation["properties"]["detail"]
        validation["properties"]["detail"] = {
            "title": "Detail",
            "anyOf": [{k: v for k, v in listed.items() if k != "title"}, {"type": "string"}],
        }
        validation["required"] = ["detail"]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, description in (
                ("413", "Request body too large"),
                ("503", "A dependency (database, Redis) is unavailable"),
            ):
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
    return openapi
