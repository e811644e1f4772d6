"""One-off executions of tool code in the episodes' sandbox: how synthesis verifies tools.

A request's calls run in order in one fresh sandbox worker built from the request's tools, so
state persists between them as it does within an episode; the worker is closed afterwards.
Every failure of a call (its arguments, its tool, the sandbox) is that call's outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jsonschema import Draft202012Validator

from astra_envhost.backends import EpisodeBackend, ToolExecutionError
from astra_envhost.kinds import SandboxFactory
from astra_envhost.registry import argument_errors, compile_validator
from astra_proto import CallOutcome, ExecutionCall, ExecutionRequest, ExecutionResult

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 2000


class InvalidExecution(ValueError):
    """The request cannot run as a whole (e.g. two tools share a name); the message says why."""


class ExecutionRunner:
    """Runs execution requests in sandboxes from ``sandbox``, at most ``max_concurrent`` at once.

    ``sandbox`` is the factory episodes use, so executions get the same isolation and limits;
    requests beyond ``max_concurrent`` wait for a slot.
    """

    def __init__(self, sandbox: SandboxFactory, max_concurrent: int = 4) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.sandbox = sandbox
        self.max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Every call of ``request``, in order, in one fresh sandbox; one outcome per call.

        ``InvalidExecution`` when tool names repeat. A tool whose input schema is invalid makes
        each call of it fail (as does its code failing to load), not the request.
        """
        names = [tool.spec.name for tool in request.tools]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidExecution(f"tool names must be unique; repeated: {', '.join(repeated)}")
        validators: dict[str, Draft202012Validator | str] = {}
        for tool in request.tools:
            try:
                validators[tool.spec.name] = compile_validator(tool.spec)
            except ValueError as exc:
                validators[tool.spec.name] = str(exc)
        async with self._slots:
            backend = self.sandbox(list(request.tools))
            try:
                outcomes = [await self._call(backend, validators, call) for call in request.calls]
            finally:
                await backend.close()
        return ExecutionResult(outcomes=outcomes)

    async def _call(
        self,
        backend: EpisodeBackend,
        validators: dict[str, Draft202012Validator | str],
        call: ExecutionCall,
    ) -> CallOutcome:
        started = time.perf_counter()
        output: Any = None
        error: str | None = None
        validator = validators.get(call.tool_name)
        if validator is None:
            offered = ", ".join(sorted(validators))
            error = f"unknown tool {call.tool_name!r}; this request has: {offered}"
        elif isinstance(validator, str):
            error = validator
        elif problems := argument_errors(validator, call.arguments):
            error = f"invalid arguments for {call.tool_name}: " + "; ".join(problems)
        else:
            try:
                output = await backend.call(call.tool_name, call.arguments)
            except ToolExecutionError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a backend bug must not fail the other calls
                log.exception("execution of tool %s failed unexpectedly", call.tool_name)
                error = f"internal error: {type(exc).__name__}: {exc}"
        return CallOutcome(
            tool_name=call.tool_name,
            output=output,
            error=error[:ERROR_TEXT_LIMIT] if error is not None else None,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )
