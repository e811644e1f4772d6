"""synth's client of envhost: running synthesized tools in its sandbox (``POST
/v1/executions``) and reading the BFCL environment specs it serves (``GET
/v1/bfcl/environments``).

Synth never executes tool code itself: every replay and verification goes to the envhost
that serves episodes, so a tool is checked in the very sandbox it will run in.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from astra_common.clients import ServiceError
from astra_common.clients.envhost import EnvhostClient
from astra_proto import EnvironmentSpec, ReferenceCall, SyntheticTool
from astra_proto.execution import (
    MAX_EXECUTION_CALLS,
    CallOutcome,
    ExecutionCall,
    ExecutionRequest,
)
from astra_synth.llm_pipeline.executor import ExecutorUnavailable
from astra_synth.settings import SynthSettings


class ExecutionUnavailable(ExecutorUnavailable):
    """envhost could not run the calls (unreachable, refused, or answered an error); the
    pipeline ends the job on it rather than rejecting one item."""


class BfclSelectionRefused(ValueError):
    """envhost refused a BFCL selection (an unknown category or entry id); the message is its
    reason."""


class EnvironmentExecutor:
    """synth's use of envhost's execution and BFCL endpoints, through the typed envhost
    client; use it as an async context manager."""

    def __init__(
        self, envhost_url: str, *, token: str | None = None, timeout_s: float = 120.0
    ) -> None:
        self.envhost_url = envhost_url.rstrip("/")
        self.envhost = EnvhostClient(self.envhost_url, token=token, timeout_s=timeout_s)

    @classmethod
    def from_settings(cls, settings: SynthSettings) -> EnvironmentExecutor:
        """The executor of the configured envhost."""
        token = settings.envhost_token.get_secret_value() if settings.envhost_token else None
        return cls(settings.envhost_url, token=token)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.envhost.aclose()

    async def run(
        self, tools: Sequence[SyntheticTool], calls: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[CallOutcome]:
        """Run ``calls`` in order in one fresh sandbox worker holding ``tools``; tool errors,
        timeouts and crashes come back as outcomes with ``error`` set.
        ``ExecutionUnavailable`` when envhost cannot be used at all."""
        if not calls:
            return []
        outcomes: list[CallOutcome] = []
        # One request keeps one worker; longer replays are split (state restarts per chunk).
        for start in range(0, len(calls), MAX_EXECUTION_CALLS):
            chunk = calls[start : start + MAX_EXECUTION_CALLS]
            request = ExecutionRequest(
                tools=list(tools),
                calls=[ExecutionCall(tool_name=name, arguments=args) for name, args in chunk],
            )
            outcomes.extend(await self._execute(request))
        return outcomes

    async def replay(
        self, tools: Sequence[SyntheticTool], calls: Sequence[ReferenceCall]
    ) -> list[tuple[Any, str | None]]:
        """``(output, error)`` of each reference call, run as ``run`` does."""
        outcomes = await self.run(tools, [(c.tool_name, dict(c.arguments)) for c in calls])
        return [(outcome.output, outcome.error) for outcome in outcomes]

    async def bfcl_environments(
        self,
        categories: Sequence[str] | None,
        limit: int | None,
        entries: Sequence[str] | None,
    ) -> list[EnvironmentSpec]:
        """The BFCL v3 multi-turn specs envhost builds for the selection, in BFCL's order.
        ``BfclSelectionRefused`` for an unknown category or entry id;
        ``ExecutionUnavailable`` when envhost cannot be used at all."""
        try:
            return await self.envhost.bfcl_environments(
                categories=categories, limit=limit, entries=entries
            )
        except ServiceError as exc:
            if exc.status == 422:
                raise BfclSelectionRefused(exc.detail) from None
            raise ExecutionUnavailable(str(exc)) from None

    async def _execute(self, request: ExecutionRequest) -> list[CallOutcome]:
        try:
            result = await self.envhost.execute(request)
        except ServiceError as exc:
            raise ExecutionUnavailable(str(exc)) from None
        if len(result.outcomes) != len(request.calls):
            raise ExecutionUnavailable(
                f"envhost returned {len(result.outcomes)} outcomes for {len(request.calls)} calls"
            )
        return list(result.outcomes)
