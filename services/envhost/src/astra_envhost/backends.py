"""What an episode runs its tools on: a sandboxed worker, or a trusted in-process backend."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol


class ToolExecutionError(Exception):
    """A tool call failed; the message is shown to the agent as an MCP tool error.

    Raised for the tool's own errors, timeouts and sandbox crashes alike: none of them ends the
    episode or the server.
    """


class EpisodeBackend(Protocol):
    """Executes the tools of one episode; each episode has its own, isolated from the others."""

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Run one call and return its structured (JSON-serialisable) output.

        Arguments were already validated against the tool's input schema. Raises
        ``ToolExecutionError`` when the call fails in any way.
        """
        ...

    async def close(self) -> None:
        """Release everything the episode holds (processes, memory). Idempotent."""
        ...


class EpisodeRuntime:
    """The backends that execute one episode's tools, and which tools each turn offers."""

    def __init__(
        self,
        by_tool: dict[str, EpisodeBackend],
        available_at: Callable[[int], Collection[str]] | None = None,
    ) -> None:
        self.by_tool = by_tool
        self._available_at = available_at

    def begin_turn(self, turn: int) -> None:
        """The episode moved to user turn ``turn``; kinds with turn-dependent state override."""

    def available(self, turn: int) -> Collection[str]:
        """Names of the tools offered at ``turn`` (every tool unless the kind says otherwise)."""
        if self._available_at is None:
            return self.by_tool.keys()
        return self._available_at(turn)

    async def close(self) -> None:
        """Close every backend once."""
        seen: set[int] = set()
        for backend in self.by_tool.values():
            if id(backend) not in seen:
                seen.add(id(backend))
                await backend.close()
