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
from typing import Literal

from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode

WORKER_SOURCE = Path(__file__).with_name("worker.py")
"""The worker program; in bubblewrap mode only this one file of the source tree is bound."""

WORKER_IN_SANDBOX = "/sandbox/worker.py"
PYTHON_IN_SANDBOX = "/sandbox/python"
"""Where the interpreter appears in the sandbox (its prefix there), whatever its host path."""

SANDBOX_UID = 65534
"""The uid (and gid) tool code has inside the sandbox: ``nobody``, not root."""


@dataclass(frozen=True)
class HostIdentity:
    """A host uid and gid that tool code runs as."""

    uid: int
    gid: int


NOBODY = HostIdentity(uid=65534, gid=65534)
"""``nobody``/``nogroup``: who tool code is on the host when envhost runs as root."""


def default_host_identity() -> HostIdentity | None:
    """Whom tool code runs as on the host: ``NOBODY`` when envhost is root; None otherwise.

    None means envhost's own (unprivileged) user: bubblewrap started by an ordinary user builds
    the sandbox in a user namespace and cannot switch to another host uid.
    """
    return NOBODY if os.geteuid() == 0 else None


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
"""The environment bubblewrap itself runs with: none of the host's variables (secrets)."""


def find_bwrap() -> str | None:
    """Path of the ``bwrap`` executable on PATH, or None."""
    return shutil.which("bwrap")


@dataclass(frozen=True)
class InterpreterLayout:
    """The files the host's base Python interpreter needs, bound read-only into the sandbox
    under ``PYTHON_IN_SANDBOX`` so that no host path of it is visible there."""

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

    @property
    def executable_in_sandbox(self) -> str:
        """The interpreter's path inside the sandbox."""
        return f"{PYTHON_IN_SANDBOX}/bin/{os.path.basename(self.executable)}"

    @property
    def libdir_in_sandbox(self) -> str:
        """Where libpython is inside the sandbox (the interpreter's ``LD_LIBRARY_PATH``)."""
        return f"{PYTHON_IN_SANDBOX}/{sys.platlibdir}"

    @property
    def stdlib_in_sandbox(self) -> str:
        """The standard library inside the sandbox, where the interpreter looks for it when its
        executable is ``executable_in_sandbox`` (so sys.prefix is ``PYTHON_IN_SANDBOX``)."""
        major, minor = sys.version_info[:2]
        return f"{self.libdir_in_sandbox}/python{major}.{minor}"

    def import_dirs(self) -> list[str]:
        """Host directories whose modules tool code may import while it runs."""
        return [path for path in (self.stdlib, self.dynload) if path]

    def environment(self) -> dict[str, str]:
        """Variables the interpreter needs at its neutral place: a shared build's libpython."""
        return {"LD_LIBRARY_PATH": self.libdir_in_sandbox} if self.libpython else {}

    def bwrap_binds(self) -> list[str]:
        """bwrap arguments binding the interpreter read-only at neutral paths; its
        site-packages stays hidden."""
        args: list[str] = []
        for directory in (PYTHON_IN_SANDBOX, f"{PYTHON_IN_SANDBOX}/bin", self.libdir_in_sandbox):
            args += ["--perms", "0755", "--dir", directory]  # traversable after the uid switch
        args += ["--ro-bind", self.executable, self.executable_in_sandbox]
        args += ["--ro-bind", self.stdlib, self.stdlib_in_sandbox]
        if self.dynload and self.dynload != os.path.join(self.stdlib, "lib-dynload"):
            args += ["--ro-bind", self.dynload, f"{self.stdlib_in_sandbox}/lib-dynload"]
        if self.libpython:
            name = os.path.basename(self.libpython)
            args += ["--ro-bind", self.libpython, f"{self.libdir_in_sandbox}/{name}"]
        if os.path.isdir(os.path.join(self.stdlib, "site-packages")):
            site_packages = f"{self.stdlib_in_sandbox}/site-packages"
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
    args += ["--perms", "0755", "--dir", "/etc"]  # bwrap would make it 0700: root's only
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def userns_sysctl_writable(path: str = "/proc/sys/user") -> bool:
    """Whether bwrap can cap nesting (``--disable-userns`` writes ``max_user_namespaces`` of
    the sandbox's user namespace). Docker mounts ``/proc/sys`` read-only unless the container
    runs with ``systempaths=unconfined``; there the seccomp filter alone refuses nesting."""
    try:
        return not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def _namespace_args(run_as: HostIdentity | None) -> list[str]:
    """Namespaces and privileges of the sandbox, by who tool code will be on the host."""
    common = ["--hostname", "sandbox", "--die-with-parent", "--new-session"]
    if run_as is None:
        # An ordinary user: a user namespace maps SANDBOX_UID to that user, with no privilege.
        # Tool code cannot nest a user namespace of its own: the seccomp filter refuses
        # unshare, setns and every clone but a thread's; bwrap also caps nesting where it can.
        nesting = ["--disable-userns"] if userns_sysctl_writable() else []
        return [
            "--unshare-all",  # user, pid, net (loopback only), ipc, uts, cgroup namespaces
            "--unshare-user",
            *nesting,
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            *common,
            "--cap-drop", "ALL",
        ]  # fmt: skip
    # Root: no user namespace (it would map the sandbox to host uid 0). bwrap builds the mounts
    # as root, so it reaches an interpreter under a private path such as /root; the worker
    # keeps only the right to switch ids and switches to run_as before any tool code runs.
    return [
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try",
        *common,
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
    ]  # fmt: skip


def bubblewrap_worker_env(layout: InterpreterLayout) -> dict[str, str]:
    """The worker's whole environment in bubblewrap mode."""
    return {**WORKER_ENV, **layout.environment()}


def worker_command(
    mode: SandboxMode,
    limits: SandboxLimits,
    *,
    bwrap: str | None = None,
    seccomp_fd: int | None = None,
    info_fd: int | None = None,
    interpreter: InterpreterLayout | None = None,
    run_as: HostIdentity | Literal["default"] | None = "default",
) -> list[str]:
    """The argv that starts one worker.

    In bubblewrap mode ``bwrap`` is the executable (default: found on PATH), ``seccomp_fd`` an
    inherited descriptor holding the filter of ``seccomp.build_filter()``, ``info_fd`` one
    bwrap writes its JSON info to (the host pid of the sandbox's pid 1), and ``run_as`` the
    host identity tool code runs as (default: ``default_host_identity()``; None: the caller's).
    """
    layout = interpreter or InterpreterLayout.of_running_interpreter()
    if mode == "none":
        limits_arg = json.dumps(limits.worker_rlimits(), separators=(",", ":"))
        return [layout.executable, *PYTHON_FLAGS, str(WORKER_SOURCE), limits_arg]

    bwrap = bwrap or find_bwrap()
    if bwrap is None:
        raise FileNotFoundError("bwrap (bubblewrap) is not installed or not on PATH")
    identity = default_host_identity() if run_as == "default" else run_as
    worker_settings = limits.worker_rlimits()
    if identity is not None:
        worker_settings["run_as_uid"] = identity.uid
        worker_settings["run_as_gid"] = identity.gid
    args = [bwrap, *_namespace_args(identity), "--clearenv"]
    for name, value in bubblewrap_worker_env(layout).items():
        args += ["--setenv", name, value]
    args += _system_binds()
    args += ["--perms", "0755", "--dir", "/sandbox"]
    args += layout.bwrap_binds()
    args += ["--ro-bind", str(WORKER_SOURCE), WORKER_IN_SANDBOX]
    # No /proc and no /sys: nothing of the host kernel's settings, the mount table (which
    # names every bind's host path) or other processes' command lines.
    args += ["--dev", "/dev", "--remount-ro", "/dev"]
    args += ["--perms", "1777", "--size", str(limits.scratch_bytes), "--tmpfs", "/tmp"]
    args += ["--chdir", "/tmp", "--remount-ro", "/"]  # last: the root held the mount points
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    limits_arg = json.dumps(worker_settings, separators=(",", ":"))
    args += ["--", layout.executable_in_sandbox, *PYTHON_FLAGS, WORKER_IN_SANDBOX, limits_arg]
    return args
