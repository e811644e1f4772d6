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

import httpx
from pydantic import BaseModel

from astra_proto import EnvironmentSpec, ReferenceCall, SyntheticTool
from astra_proto.execution import (
    MAX_EXECUTION_CALLS,
    CallOutcome,
    ExecutionCall,
    ExecutionRequest,
    ExecutionResult,
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
    """An HTTP client of envhost's execution and BFCL endpoints; use it as an async context
    manager."""

    def __init__(
        self, envhost_url: str, *, token: str | None = None, timeout_s: float = 120.0
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.envhost_url = envhost_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.envhost_url, headers=headers, timeout=timeout_s)

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
        await self.http.aclose()

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
            outcomes.extend(await self._post(request))
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
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("category", name) for name in categories or []
        ]
        params += [("entry", entry_id) for entry_id in entries or []]
        if limit is not None:
            params.append(("limit", limit))
        specs: list[EnvironmentSpec] = []
        while True:  # page by page: the whole benchmark is ~16 MB of specs
            page = await self._bfcl_page([*params, ("offset", len(specs))])
            specs += page.items
            if not page.items or len(specs) >= page.total:
                return specs

    async def _bfcl_page(
        self, params: list[tuple[str, str | int | float | bool | None]]
    ) -> _BfclPage:
        try:
            response = await self.http.get("/v1/bfcl/environments", params=params)
        except httpx.HTTPError as exc:
            raise ExecutionUnavailable(
                f"cannot reach envhost at {self.envhost_url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code == 422:
            detail = response.json().get("detail")
            raise BfclSelectionRefused(detail if isinstance(detail, str) else str(detail))
        if response.status_code != 200:
            raise ExecutionUnavailable(
                f"envhost answered {response.status_code} to a BFCL request: {response.text[:300]}"
            )
        return _BfclPage.model_validate_json(response.content)

    async def _post(self, request: ExecutionRequest) -> list[CallOutcome]:
        try:
            response = await self.http.post(
                "/v1/executions", content=request.model_dump_json(), headers=_JSON
            )
        except httpx.HTTPError as exc:
            raise ExecutionUnavailable(
                f"cannot reach envhost at {self.envhost_url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code != 200:
            raise ExecutionUnavailable(
                f"envhost answered {response.status_code} to an execution: {response.text[:300]}"
            )
        result = ExecutionResult.model_validate_json(response.content)
        if len(result.outcomes) != len(request.calls):
            raise ExecutionUnavailable(
                f"envhost returned {len(result.outcomes)} outcomes for {len(request.calls)} calls"
            )
        return list(result.outcomes)


_JSON = {"Content-Type": "application/json"}


class _BfclPage(BaseModel):
    """A page of envhost's ``GET /v1/bfcl/environments``."""

    total: int
    items: list[EnvironmentSpec]
