"""``SandboxBackend``: an episode's tools, executed by a sandboxed worker of its own."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from astra_envhost.backends import ToolExecutionError
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode
from astra_envhost.sandbox.process import WorkerFailure, WorkerProcess, WorkerTimeout
from astra_proto.tools import SyntheticTool

log = logging.getLogger(__name__)

_STATE_RESET = "a fresh sandbox serves the next call; this episode's tool state was reset"


class SandboxPool:
    """Caps the live sandbox workers of many ``SandboxBackend``s.

    A backend takes a slot before it starts a worker and gives it back when it closes. At the
    cap, the backend whose worker was used least recently and is not in a call is evicted (its
    worker stopped); when every worker is in a call, ``ToolExecutionError`` says so.
    """

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._holders: OrderedDict[SandboxBackend, None] = OrderedDict()  # least recent first

    @property
    def live(self) -> int:
        """Slots taken (workers running or starting)."""
        return len(self._holders)

    async def admit(self, backend: SandboxBackend) -> None:
        """Give ``backend`` a slot, evicting the least recently used idle worker at the cap."""
        if backend in self._holders:
            self._holders.move_to_end(backend)
            return
        victim: SandboxBackend | None = None
        if len(self._holders) >= self.max_workers:
            victim = next((held for held in self._holders if not held.busy), None)
            if victim is None:
                raise ToolExecutionError(
                    f"all {self.max_workers} sandbox workers of this envhost are running tool "
                    "calls (ASTRA_ENVHOST_MAX_SANDBOX_WORKERS); try again when one finishes"
                )
            del self._holders[victim]
        self._holders[backend] = None  # taken before any await, so concurrent admits see it
        if victim is not None:
            await victim.evict(self.max_workers)

    def touch(self, backend: SandboxBackend) -> None:
        """``backend`` used its worker: it is now the most recently used."""
        if backend in self._holders:
            self._holders.move_to_end(backend)

    def release(self, backend: SandboxBackend) -> None:
        """``backend`` has no worker any more."""
        self._holders.pop(backend, None)


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
        pool: SandboxPool | None = None,
    ) -> None:
        """``mode="none"`` runs the same worker without isolation: development only.

        ``bwrap`` is the bubblewrap executable (default: ``bwrap`` on PATH); ``pool``, when
        given, caps live workers across the backends that share it.
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
        self._pool = pool
        self._evicted_at_cap: int | None = None

    @property
    def busy(self) -> bool:
        """Whether a call (or a worker start) is in progress."""
        return self._lock.locked()

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
            if self._evicted_at_cap is not None:
                cap, self._evicted_at_cap = self._evicted_at_cap, None
                raise ToolExecutionError(
                    f"this episode's sandbox was stopped to make room for other episodes "
                    f"({cap} live sandboxes is this envhost's maximum); {_STATE_RESET}"
                )
            worker = await self._ready_worker()
            if self._pool is not None:
                self._pool.touch(self)
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
        if self._pool is not None:
            self._pool.release(self)
        if worker is not None:
            await worker.stop()

    async def evict(self, cap: int) -> None:
        """Stop the worker to free its slot (``SandboxPool``); the next call reports the reset."""
        async with self._lock:
            worker, self._worker = self._worker, None
            if worker is None or self._closed:
                return
            self._evicted_at_cap = cap
            log.info("stopped an idle sandbox worker: %d live sandboxes is the maximum", cap)
            await worker.stop()

    async def _ready_worker(self) -> WorkerProcess:
        """The live worker, started (and its tools loaded) if there is none."""
        if self._worker is not None and self._worker.usable:
            return self._worker
        if self._worker is not None:  # dead, or killed by a cancelled call: reap it
            await self._worker.stop()
            self._worker = None
        if self._pool is not None:
            await self._pool.admit(self)
        try:
            worker = await WorkerProcess.start(self.mode, self.limits, bwrap=self._bwrap)
        except WorkerFailure as exc:
            if self._pool is not None:
                self._pool.release(self)
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
