"""The command line that starts a worker: bubblewrap around the interpreter, or the bare
interpreter (development)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode

WORKER_SOURCE = Path(__file__).with_name("worker.py")
"""The worker program; in bubblewrap mode only this one file of the source tree is bound."""

WORKER_IN_SANDBOX = "/sandbox/worker.py"
SANDBOX_UID = 65534
"""The uid (and gid) the worker sees inside the sandbox: ``nobody``, not root."""

PYTHON_FLAGS = ("-s", "-S", "-P", "-B")
"""No user or system site-packages, no script directory on sys.path, no bytecode writes.

Not ``-I``/``-E``: the environment is built from nothing (below), and PYTHONHASHSEED must be
read so that set iteration order, hence tool output, is the same in every worker."""

WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONUTF8": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    # glibc reserves 64 MiB of address space per thread arena; RLIMIT_AS would count them.
    "MALLOC_ARENA_MAX": "2",
}
"""The worker's whole environment: no variable of the host reaches tool code."""

BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
"""The environment bubblewrap itself runs with. Its pid-1 reaper is visible inside the
sandbox's /proc, so it must not carry the host's variables (secrets) either."""


def find_bwrap() -> str | None:
    """Path of the ``bwrap`` executable on PATH, or None."""
    return shutil.which("bwrap")


@dataclass(frozen=True)
class InterpreterLayout:
    """The files the host's base Python interpreter needs, to be bound read-only."""

    executable: str
    stdlib: str
    dynload: str | None
    libpython: str | None

    @classmethod
    def of_running_interpreter(cls) -> InterpreterLayout:
        """The base interpreter behind this process (a virtualenv's python is a symlink to it)."""
        executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        stdlib = os.path.dirname(os.path.realpath(os.__file__))
        dynload = sysconfig.get_config_var("DESTSHARED")
        libpython = None
        if sysconfig.get_config_var("Py_ENABLE_SHARED"):
            libdir = sysconfig.get_config_var("LIBDIR") or ""
            soname = sysconfig.get_config_var("INSTSONAME") or ""
            candidate = os.path.join(libdir, soname)
            libpython = candidate if libdir and soname and os.path.isfile(candidate) else None
        return cls(
            executable=executable,
            stdlib=stdlib,
            dynload=dynload if isinstance(dynload, str) and os.path.isdir(dynload) else None,
            libpython=libpython,
        )

    def bwrap_binds(self) -> list[str]:
        """``--ro-bind`` arguments for the interpreter; its site-packages stays hidden."""
        args: list[str] = []
        paths = [self.executable, self.stdlib, self.dynload, self.libpython]
        for path in dict.fromkeys(p for p in paths if p):
            args += ["--ro-bind", path, path]
        site_packages = os.path.join(self.stdlib, "site-packages")
        if os.path.isdir(site_packages):
            args += ["--size", "4096", "--tmpfs", site_packages, "--remount-ro", site_packages]
        return args


def _system_binds() -> list[str]:
    """/usr read-only, the top-level lib/bin links as on the host, and the loader cache."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def worker_command(
    mode: SandboxMode,
    limits: SandboxLimits,
    *,
    bwrap: str | None = None,
    seccomp_fd: int | None = None,
    info_fd: int | None = None,
    interpreter: InterpreterLayout | None = None,
) -> list[str]:
    """The argv that starts one worker.

    In bubblewrap mode ``bwrap`` is the executable (default: found on PATH), ``seccomp_fd`` an
    inherited descriptor holding the filter of ``seccomp.build_filter()``, and ``info_fd`` one
    bwrap writes its JSON info to (the host pid of the sandbox's pid 1).
    """
    layout = interpreter or InterpreterLayout.of_running_interpreter()
    limits_arg = json.dumps(limits.worker_rlimits(), separators=(",", ":"))
    if mode == "none":
        return [layout.executable, *PYTHON_FLAGS, str(WORKER_SOURCE), limits_arg]

    bwrap = bwrap or find_bwrap()
    if bwrap is None:
        raise FileNotFoundError("bwrap (bubblewrap) is not installed or not on PATH")
    args = [
        bwrap,
        "--unshare-all",  # user, pid, net (loopback only), ipc, uts, cgroup namespaces
        "--unshare-user",
        "--disable-userns",  # tool code cannot nest a user namespace of its own
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--die-with-parent",
        "--new-session",  # no controlling terminal: no TIOCSTI into the host's tty
        "--cap-drop", "ALL",
        "--clearenv",
    ]  # fmt: skip
    for name, value in WORKER_ENV.items():
        args += ["--setenv", name, value]
    args += _system_binds()
    args += layout.bwrap_binds()
    args += ["--ro-bind", str(WORKER_SOURCE), WORKER_IN_SANDBOX]
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    args += ["--size", str(limits.scratch_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    args += ["--remount-ro", "/"]  # last: the root tmpfs held the mount points until now
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    args += ["--", layout.executable, *PYTHON_FLAGS, WORKER_IN_SANDBOX, limits_arg]
    return args
