"""Child processes that never outlive their parent.

Shared by the local runner (``astra up``) and services that run a server of their own as a
child (rollout's embedded vLLM policy server). Each child gets its own process group (so a
signal reaches its children too) and ``PR_SET_PDEATHSIG``: if the parent dies, even by
SIGKILL, the kernel sends the child SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM the calling process when its parent dies (Linux only).

    Meant as a ``preexec_fn``: it runs in the child between fork and exec.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    command: list[str], env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, output to ``log_path`` (or inherited).

    The child dies with this process (``PR_SET_PDEATHSIG``); ``log_path`` is appended to.
    """
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    try:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,  # its own group: signals reach its children too
            preexec_fn=die_with_parent,
        )
    finally:
        if log is not None:
            log.close()


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``process``; a gone group is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM every process group, wait up to ``timeout`` s in all, then SIGKILL the rest."""
    for process in processes:
        if process.poll() is None:
            signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait(5.0)
    # A group leader may exit before its children (a worker pool): sweep every group once more.
    for process in processes:
        signal_group(process, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
