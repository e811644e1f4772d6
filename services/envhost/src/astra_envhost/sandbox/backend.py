"""``SandboxBackend``: an episode's tools, executed by a sandboxed worker of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from astra_envhost.backends import ToolExecutionError
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode
from astra_envhost.sandbox.process import WorkerFailure, WorkerProcess, WorkerTimeout
from astra_proto.tools import SyntheticTool

_STATE_RESET = "a fresh sandbox serves the next call; this episode's tool state was reset"


class SandboxBackend:
    """Runs the tools of one episode in one worker process (an ``EpisodeBackend``).

    The worker starts on the first call, so an episode that never calls a tool costs nothing;
    it loads every tool's code once, and the tools' module globals then persist across the
    episode's calls. Calls are served one at a time, in arrival order.

    A call that times out, crashes the worker or breaks the protocol raises
    ``ToolExecutionError`` and kills the worker; the next call starts a fresh one, which means
    the episode's tool state is reset. Nothing a tool does raises anything else here.
    """

    def __init__(
        self,
        tools: Sequence[SyntheticTool],
        *,
        mode: SandboxMode,
        limits: SandboxLimits | None = None,
        bwrap: str | None = None,
    ) -> None:
        """``mode="none"`` runs the same worker without isolation: development only.

        ``bwrap`` is the bubblewrap executable (default: ``bwrap`` on PATH).
        """
        names = [tool.spec.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique within an episode: {names}")
        if mode not in ("bubblewrap", "none"):
            raise ValueError(f"unknown sandbox mode {mode!r}")
        self.mode: SandboxMode = mode
        self.limits = limits or SandboxLimits()
        self._bwrap = bwrap
        self._load_request = {
            "op": "load",
            "tools": [
                {"name": tool.spec.name, "code": tool.code, "entrypoint": tool.entrypoint}
                for tool in tools
            ],
        }
        self._tool_names = frozenset(names)
        self._load_errors: dict[str, str] = {}
        self._worker: WorkerProcess | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """Host pid of the live worker's top process (bwrap in bubblewrap mode), else None."""
        worker = self._worker
        return worker.pid if worker is not None and worker.running else None

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Run one tool call in the sandbox; returns its JSON result.

        Raises ``ToolExecutionError`` for every failure: the tool's exception (type and
        message), a load error of its code, a result that is not JSON or too large, a timeout
        or a crash of the sandbox, an unknown tool, a closed episode.
        """
        if tool_name not in self._tool_names:
            known = ", ".join(sorted(self._tool_names)) or "none"
            raise ToolExecutionError(f"unknown tool {tool_name!r} (this episode has: {known})")
        try:
            json.dumps(arguments, allow_nan=False, ensure_ascii=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ToolExecutionError(f"the arguments are not JSON: {exc}") from None
        async with self._lock:
            self._raise_if_closed()
            worker = await self._ready_worker()
            if tool_name in self._load_errors:
                raise ToolExecutionError(self._load_errors[tool_name])
            request = {"op": "call", "tool": tool_name, "arguments": arguments}
            try:
                reply = await worker.request(request, self.limits.call_timeout_s)
            except WorkerTimeout:
                self._raise_if_closed()
                raise ToolExecutionError(
                    f"tool call timed out after {self.limits.call_timeout_s:g}s; {_STATE_RESET}"
                ) from None
            except WorkerFailure as exc:
                self._raise_if_closed()
                raise ToolExecutionError(f"{exc}; {_STATE_RESET}") from None
        if not reply["ok"]:
            raise ToolExecutionError(reply["error"])
        return reply.get("result")

    async def close(self) -> None:
        """Kill the worker (and everything in its sandbox); idempotent. Later calls fail."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()

    async def _ready_worker(self) -> WorkerProcess:
        """The live worker, started (and its tools loaded) if there is none."""
        if self._worker is not None and self._worker.usable:
            return self._worker
        if self._worker is not None:  # dead, or killed by a cancelled call: reap it
            await self._worker.stop()
            self._worker = None
        try:
            worker = await WorkerProcess.start(self.mode, self.limits, bwrap=self._bwrap)
        except WorkerFailure as exc:
            raise ToolExecutionError(str(exc)) from None
        if self._closed:  # close() ran while the worker was starting: it must not outlive it
            await worker.stop()
            self._raise_if_closed()
        self._worker = worker
        try:
            reply = await worker.request(self._load_request, self.limits.start_timeout_s)
        except WorkerTimeout:
            self._raise_if_closed()
            raise ToolExecutionError(
                f"the sandbox did not start and load the tools within "
                f"{self.limits.start_timeout_s:g}s"
            ) from None
        except WorkerFailure as exc:
            self._raise_if_closed()
            raise ToolExecutionError(f"the sandbox failed while loading the tools: {exc}") from None
        if not reply["ok"]:
            await worker.stop()
            raise ToolExecutionError(f"the sandbox could not load the tools: {reply['error']}")
        load_errors = reply.get("load_errors")
        self._load_errors = (
            {str(name): str(error) for name, error in load_errors.items()}
            if isinstance(load_errors, dict)
            else {}
        )
        return worker

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise ToolExecutionError("the episode is closed")
