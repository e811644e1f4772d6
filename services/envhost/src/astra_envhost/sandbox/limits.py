"""How much one episode's sandboxed worker may use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

SandboxMode = Literal["bubblewrap", "none"]
"""``bubblewrap``: isolated (the only mode for untrusted code). ``none``: the same worker
program as a plain child process, for development only."""

MiB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one episode's worker.

    The rlimits are applied by the worker itself before any tool code is loaded; the wall-clock
    timeout and the output cap are enforced by the host as well, so a misbehaving worker cannot
    escape them.
    """

    call_timeout_s: float = 10.0
    """Wall-clock limit of one call (host-enforced). On expiry the worker is killed and the next
    call starts a fresh one: the episode's tool state is reset."""

    start_timeout_s: float = 10.0
    """Wall-clock limit for starting the worker and loading every tool's code."""

    cpu_seconds: int = 10
    """CPU seconds one call (or the initial load) may use: RLIMIT_CPU's soft limit, re-armed
    before each call; exceeding it kills the worker with SIGXCPU."""

    worker_cpu_seconds: int = 600
    """CPU seconds the worker may use over its whole life (RLIMIT_CPU's hard limit, which tool
    code cannot raise)."""

    memory_bytes: int = 256 * MiB
    """Address space of the worker (RLIMIT_AS): allocations beyond it raise MemoryError."""

    max_processes: int = 32
    """RLIMIT_NPROC (tasks, threads included), counted per sandbox in the user namespace of an
    envhost that is not root. Under a root envhost every worker is host uid 65534, where the
    count would span all of them, so it is not applied; the seccomp filter refuses new
    processes regardless, and RLIMIT_AS bounds threads (their stacks)."""

    max_open_files: int = 64
    """RLIMIT_NOFILE."""

    max_file_bytes: int = 8 * MiB
    """Largest file the worker may write (RLIMIT_FSIZE); larger writes fail with EFBIG."""

    scratch_bytes: int = 16 * MiB
    """Size of the private tmpfs at /tmp, the only writable place (bubblewrap mode)."""

    max_output_bytes: int = 1 * MiB
    """Largest JSON-encoded result of one call; larger results are an error."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {value!r}")
        if self.worker_cpu_seconds < self.cpu_seconds:
            raise ValueError("SandboxLimits.worker_cpu_seconds must be >= cpu_seconds")

    def worker_rlimits(self) -> dict[str, int]:
        """The limits the worker applies to itself (its command-line argument, as JSON)."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "worker_cpu_seconds": self.worker_cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "max_processes": self.max_processes,
            "max_open_files": self.max_open_files,
            "max_file_bytes": self.max_file_bytes,
            "max_output_bytes": self.max_output_bytes,
        }
