"""How the pipeline runs tool code: through a ``ToolExecutor``, never in its own process.

The synth worker's executor is an HTTP client of envhost's ``POST /v1/executions``, which
loads the tools' code and runs the calls in one fresh sandbox worker, the same sandbox that
serves episodes. Tests use envhost's sandbox directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from astra_proto import SyntheticTool
from astra_proto.execution import CallOutcome

__all__ = ["CallOutcome", "ExecutorUnavailable", "ToolExecutor"]


class ToolExecutor(Protocol):
    """Runs tool code and calls in one fresh sandbox."""

    async def run(
        self, tools: Sequence[SyntheticTool], calls: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[CallOutcome]:
        """Load ``tools`` into a fresh sandbox and make ``calls`` (tool name, arguments) in
        order; one outcome per call. A tool that fails is an outcome with ``error``.

        Raises ``ExecutorUnavailable`` when the sandbox service cannot be used at all; any
        other exception counts as a failed verification of the code under test.
        """
        ...


class ExecutorUnavailable(Exception):
    """The sandbox service cannot be reached or refuses every request: the job fails."""
