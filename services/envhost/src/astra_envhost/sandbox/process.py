"""One running worker, seen from the host: start it, exchange JSON lines, kill it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any, Literal

from astra_envhost.sandbox.command import BWRAP_ENV, WORKER_ENV, HostIdentity, worker_command
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode
from astra_envhost.sandbox.pipes import ReplyTooLarge, WorkerPipes
from astra_envhost.sandbox.seccomp import build_filter

EXIT_GRACE_S = 1.0
"""How long a worker whose stdout closed may take to exit before it is killed."""

KILL_WAIT_S = 5.0
"""How long killed processes may take to disappear before the host stops waiting."""

REPLY_OVERHEAD_BYTES = 64 * 1024
"""Room for the reply envelope and error messages on top of ``max_output_bytes``."""

_SIGNAL_HINTS: dict[int, str] = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
}


class WorkerFailure(Exception):
    """The worker crashed, broke the protocol or was killed; it is gone. Message: for the agent."""


class WorkerTimeout(WorkerFailure):
    """A request did not complete in time; the worker was killed."""


class WorkerProcess:
    """A started worker process (bwrap and the interpreter inside it, or the bare interpreter).

    The caller serialises requests: one request at a time.
    """

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        pipes: WorkerPipes,
        mode: SandboxMode,
        scratch_dir: str | None = None,
        info_fd: int | None = None,
    ) -> None:
        self._transport = transport
        self._pipes = pipes
        self._mode = mode
        self._scratch_dir = scratch_dir
        self._info_fd = info_fd
        self._sandbox_init_pid: int | None = None
        self._next_id = 0
        self._broken = False

    @classmethod
    async def start(
        cls,
        mode: SandboxMode,
        limits: SandboxLimits,
        *,
        bwrap: str | None = None,
        run_as: HostIdentity | Literal["default"] | None = "default",
    ) -> WorkerProcess:
        """Spawn a worker (it loads no tools until asked). Raises ``WorkerFailure``.

        ``run_as`` is the host identity of tool code (see ``command.worker_command``)."""
        scratch_dir: str | None = None
        info_fd: int | None = None
        pass_fds: tuple[int, ...] = ()
        if mode == "bubblewrap":
            seccomp_read, seccomp_write = os.pipe()
            with os.fdopen(seccomp_write, "wb") as writer:  # a few hundred bytes: fits the pipe
                writer.write(build_filter())
            info_fd, info_write = os.pipe()
            os.set_blocking(info_fd, False)
            pass_fds = (seccomp_read, info_write)
            argv = worker_command(
                mode,
                limits,
                bwrap=bwrap,
                seccomp_fd=seccomp_read,
                info_fd=info_write,
                run_as=run_as,
            )
            env = BWRAP_ENV
        else:
            scratch_dir = tempfile.mkdtemp(prefix="astra-sandbox-")
            argv = worker_command(mode, limits)
            env = {**WORKER_ENV, "HOME": scratch_dir, "TMPDIR": scratch_dir}
        line_limit = limits.max_output_bytes + REPLY_OVERHEAD_BYTES
        try:
            transport, pipes = await asyncio.get_running_loop().subprocess_exec(
                lambda: WorkerPipes(line_limit),
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=scratch_dir,
                pass_fds=pass_fds,
                start_new_session=True,  # its own process group, killed as a whole
            )
        except BaseException as exc:
            if scratch_dir is not None:
                shutil.rmtree(scratch_dir, ignore_errors=True)
            if info_fd is not None:
                os.close(info_fd)
            if isinstance(exc, OSError):
                raise WorkerFailure(f"the sandbox could not be started: {exc}") from exc
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        return cls(transport, pipes, mode, scratch_dir=scratch_dir, info_fd=info_fd)

    @property
    def pid(self) -> int:
        """Host pid of the process the host started (bwrap, or the interpreter)."""
        return self._transport.get_pid()

    @property
    def running(self) -> bool:
        """Not yet reaped (it may be busy with a request, or killed and exiting)."""
        return self._transport.get_returncode() is None

    @property
    def usable(self) -> bool:
        """Running, and every request so far was answered properly."""
        return not self._broken and self.running

    async def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and return the worker's reply.

        Raises ``WorkerTimeout`` or ``WorkerFailure``; the worker is then dead (``usable`` is
        False). Cancellation kills the worker too, since a reply still on its way would
        desynchronise the protocol; the owner reaps it with ``stop()``.
        """
        if not self.usable:
            raise WorkerFailure("the sandbox is not running")
        request_id = self._next_id
        self._next_id += 1
        line = (json.dumps({"id": request_id, **message}, ensure_ascii=False) + "\n").encode()
        stdin = self._transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self._broken = True  # until a well-formed reply has been read
        try:
            async with asyncio.timeout(timeout_s):
                # Unbounded write buffer, but one request at a time: it holds one request.
                stdin.write(line)
                raw = await self._pipes.readline()
        except TimeoutError:
            await self.stop()
            raise WorkerTimeout(f"timed out after {timeout_s:g}s") from None
        except ReplyTooLarge:
            await self.stop()
            raise WorkerFailure("the sandbox sent a reply larger than the output limit") from None
        except BaseException:
            self._kill()
            raise
        if not raw:
            await self.stop(grace_s=EXIT_GRACE_S)
            raise WorkerFailure(f"sandbox crashed ({self.describe_exit()})")
        reply = _parse_reply(raw, request_id)
        if reply is None:
            await self.stop()
            raise WorkerFailure("the sandbox sent a malformed reply")
        self._broken = False
        return reply

    def describe_exit(self) -> str:
        """How the worker ended, e.g. ``killed by signal SIGSEGV: segmentation fault``."""
        code = self._transport.get_returncode()
        if code is None:
            return "still running"
        number = -code if code < 0 else None
        if self._mode == "bubblewrap" and 128 < code < 128 + signal.NSIG:
            number = code - 128  # bwrap exits with 128 + the signal that killed its child
        if number is None:
            stderr = bytes(self._pipes.stderr_tail).decode("utf-8", "replace").strip()
            last_line = stderr.splitlines()[-1][-300:] if stderr else ""
            return f"exit code {code}" + (f"; stderr: {last_line}" if last_line else "")
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        hint = _SIGNAL_HINTS.get(number)
        return f"killed by signal {name}" + (f": {hint}" if hint else "")

    async def stop(self, grace_s: float = 0.0) -> None:
        """Kill everything the worker runs (after ``grace_s`` to exit by itself), reap it and
        release its pipes; idempotent."""
        self._broken = True
        if grace_s > 0 and self.running:
            # A worker that just crashed is exiting: let it, so that its exit status is its own.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pipes.exited), grace_s)
        if self.running and self._kill_sandbox():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pipes.exited), KILL_WAIT_S)
        self._kill()
        await asyncio.shield(self._pipes.exited)
        self._transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pipes.closed), KILL_WAIT_S)
        if self._info_fd is not None:
            os.close(self._info_fd)
            self._info_fd = None
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    def _kill(self) -> None:
        """SIGKILL the sandbox, without waiting."""
        if not self.running:
            return  # reaped: its pid could already be someone else's process group
        if not self._kill_sandbox():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def _kill_sandbox(self) -> bool:
        """SIGKILL the sandbox's pid 1, which takes its whole pid namespace down; bwrap then
        exits by itself after reaping it. (Killing bwrap first would orphan pid 1 to the host's
        init, a zombie where that init does not reap.) False when that is not possible."""
        pid = self._sandbox_pid()
        if pid is None:
            return False
        try:
            pidfd = os.pidfd_open(pid)  # pins the process: no pid-reuse race from here on
        except OSError:
            return False
        try:
            if _parent_pid(pid) != self.pid:
                return False
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return True
        except OSError:
            return False
        finally:
            os.close(pidfd)

    def _sandbox_pid(self) -> int | None:
        """Host pid of the sandbox's pid 1, from bwrap's ``--info-fd`` JSON."""
        if self._sandbox_init_pid is None and self._info_fd is not None:
            try:
                info = json.loads(os.read(self._info_fd, 65536))
            except (OSError, ValueError):
                return None  # not written yet (still starting) or bwrap failed
            child_pid = info.get("child-pid") if isinstance(info, dict) else None
            self._sandbox_init_pid = child_pid if isinstance(child_pid, int) else None
        return self._sandbox_init_pid


def _parse_reply(raw: bytes, request_id: int) -> dict[str, Any] | None:
    """The reply as a dict, or None when it is not a well-formed reply to ``request_id``."""
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(reply, dict) or reply.get("id") != request_id:
        return None
    if reply.get("ok") is True or (
        reply.get("ok") is False and isinstance(reply.get("error"), str)
    ):
        return reply
    return None


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1])
