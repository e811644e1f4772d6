"""The start-up check: run one trivial tool in a real sandbox and verify its isolation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from typing import Any, Literal

from astra_envhost.sandbox.command import (
    BWRAP_ENV,
    PYTHON_IN_SANDBOX,
    SANDBOX_UID,
    WORKER_ENV,
    HostIdentity,
    InterpreterLayout,
    bubblewrap_worker_env,
    default_host_identity,
    find_bwrap,
    worker_command,
)
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode
from astra_envhost.sandbox.seccomp import build_filter, seccomp_supported

_PROBE_CODE = """
import os
import sys

def probe():
    import socket  # imported only now: after the worker switched to its host identity
    try:
        pid = os.fork()
    except OSError:
        forked = False
    else:
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        forked = True
    return {
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "forked": forked,
        "environ": sorted(os.environ),
        "ids": [*os.getresuid(), *os.getresgid()],
        "groups": os.getgroups(),
        "proc": os.path.exists("/proc"),
        "paths": [sys.executable, sys.prefix, os.__file__, socket.__file__],
    }
"""

_USERNS_HINT = (
    "bubblewrap needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
    "kernel.unprivileged_userns_clone=1 on older Debian kernels); in a container, run it with "
    "a seccomp/AppArmor profile that allows them"
)
_ROOT_HINT = (
    "envhost runs as root, so bubblewrap builds the sandbox without a user namespace (which "
    "needs CAP_SYS_ADMIN) and the worker switches to uid {uid} / gid {gid} (CAP_SETUID, "
    "CAP_SETGID); or run envhost as an ordinary user"
)


class SandboxUnavailableError(RuntimeError):
    """The requested sandbox cannot run here; the message says why."""


def check_sandbox_available(
    mode: SandboxMode,
    *,
    bwrap: str | None = None,
    timeout_s: float = 20.0,
    interpreter: InterpreterLayout | None = None,
    run_as: HostIdentity | Literal["default"] | None = "default",
) -> None:
    """Run a trivial tool once in a sandbox of ``mode``; raise ``SandboxUnavailableError`` if
    it cannot run or (bubblewrap) is not isolated: network, fork, environment, the identity
    tool code runs as, ``/proc`` and host paths are checked.

    ``interpreter`` and ``run_as`` are those of ``worker_command`` (default: this interpreter,
    ``default_host_identity()``). Blocking (tens of milliseconds): meant for service start-up.
    """
    layout = interpreter or InterpreterLayout.of_running_interpreter()
    identity = default_host_identity() if run_as == "default" else run_as
    pass_fds: tuple[int, ...] = ()
    env: dict[str, str] = dict(WORKER_ENV)
    if mode == "bubblewrap":
        bwrap = bwrap or find_bwrap()
        if bwrap is None:
            raise SandboxUnavailableError(
                "sandbox=bubblewrap but the bwrap executable is not installed or not on PATH "
                "(Debian: apt-get install bubblewrap)"
            )
        if not seccomp_supported():
            raise SandboxUnavailableError(
                "no seccomp filter is defined for this machine's architecture"
            )
        if identity is not None:
            _require_importable_by(identity, layout)
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "wb") as writer:
            writer.write(build_filter())
        pass_fds = (read_end,)
        argv = worker_command(
            mode,
            SandboxLimits(),
            bwrap=bwrap,
            seccomp_fd=read_end,
            interpreter=layout,
            run_as=identity,
        )
        env = dict(BWRAP_ENV)
    else:
        argv = worker_command(mode, SandboxLimits(), interpreter=layout)
    requests = [
        {
            "id": 0,
            "op": "load",
            "tools": [{"name": "probe", "code": _PROBE_CODE, "entrypoint": "probe"}],
        },
        {"id": 1, "op": "call", "tool": "probe", "arguments": {}},
    ]
    try:
        completed = subprocess.run(
            argv,
            input="".join(json.dumps(request) + "\n" for request in requests).encode(),
            capture_output=True,
            env=env,
            pass_fds=pass_fds,
            start_new_session=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(f"the {mode} sandbox could not run python: {exc}") from exc
    finally:
        for fd in pass_fds:
            os.close(fd)
    probe, failure = _probe_result(completed)
    if probe is None:
        hint = ""
        if mode == "bubblewrap" and identity is None:
            hint = f"; {_USERNS_HINT}"
        elif mode == "bubblewrap" and identity is not None:
            hint = "; " + _ROOT_HINT.format(uid=identity.uid, gid=identity.gid)
        raise SandboxUnavailableError(
            f"the {mode} sandbox failed to run a trivial tool ({failure}){hint}"
        )
    if mode == "bubblewrap":
        _verify_isolation(probe, bubblewrap_worker_env(layout), identity)


def _require_importable_by(identity: HostIdentity, layout: InterpreterLayout) -> None:
    """Tool code imports standard modules after the worker switched to ``identity``: every
    directory they come from must be readable and searchable by it (owner, group or other
    permission bits, as the kernel checks them; ACLs aside)."""
    for path in layout.import_dirs():
        try:
            info = os.stat(path)
        except OSError as exc:
            raise SandboxUnavailableError(f"the interpreter's {path} is unusable: {exc}") from exc
        if info.st_uid == identity.uid:
            allowed = info.st_mode & stat.S_IRUSR and info.st_mode & stat.S_IXUSR
        elif info.st_gid == identity.gid:
            allowed = info.st_mode & stat.S_IRGRP and info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IROTH and info.st_mode & stat.S_IXOTH
        if not allowed:
            raise SandboxUnavailableError(
                f"tool code runs as host uid {identity.uid} / gid {identity.gid}, which cannot "
                f"read {path} (mode {stat.filemode(info.st_mode)}, owner {info.st_uid}:"
                f"{info.st_gid}): make the interpreter's files readable by all users "
                f"(a Python installed under /usr or /usr/local is)"
            )


def _probe_result(
    completed: subprocess.CompletedProcess[bytes],
) -> tuple[dict[str, Any] | None, str]:
    """The probe's result, or None and why it is missing."""
    stderr = completed.stderr.decode("utf-8", "replace").strip()[-500:]
    why = f"exit code {completed.returncode}; stderr: {stderr or 'empty'}"
    lines = completed.stdout.splitlines()
    if completed.returncode != 0 or len(lines) != 2:
        return None, why
    try:
        loaded, called = (json.loads(line) for line in lines)
    except ValueError:
        return None, why
    if loaded.get("load_errors"):
        return None, f"load errors: {loaded['load_errors']}"
    if not called.get("ok"):
        return None, f"the probe failed: {called.get('error')}"
    result = called.get("result")
    return (result, "") if isinstance(result, dict) else (None, why)


def _verify_isolation(
    probe: dict[str, Any], expected_env: dict[str, str], identity: HostIdentity | None
) -> None:
    problems = []
    if probe.get("interfaces") != ["lo"]:
        problems.append(f"network interfaces visible: {probe.get('interfaces')}")
    if probe.get("forked") is not False:
        problems.append("the seccomp filter did not refuse fork()")
    leaked = set(probe.get("environ", [])) - set(expected_env) - {"PWD"}
    if leaked:
        problems.append(f"host environment variables leaked: {sorted(leaked)}")
    if identity is None and os.geteuid() == 0:
        problems.append("envhost is root and tool code would keep host uid 0 (no run_as)")
    # Without a user namespace (a root envhost) these ids are the host's own.
    expected_ids = [identity.uid] * 3 + [identity.gid] * 3 if identity else [SANDBOX_UID] * 6
    # In a user namespace, the host's supplementary groups stay with the process and show as
    # the overflow gid (= SANDBOX_UID): harmless only when the host has none beyond its own
    # gid (Docker lists a user's primary group again as a supplementary one).
    own_gid_only = identity is None and set(os.getgroups()) <= {os.getegid()}
    allowed_groups = ([], [SANDBOX_UID]) if own_gid_only else ([],)
    if probe.get("ids") != expected_ids or probe.get("groups") not in allowed_groups:
        problems.append(
            f"tool code runs as uids/gids {probe.get('ids')} groups {probe.get('groups')}, "
            f"not {expected_ids}"
        )
    if probe.get("proc") is not False:
        problems.append("/proc is visible")
    paths = probe.get("paths")
    if not isinstance(paths, list) or not all(
        isinstance(path, str) and path.startswith(PYTHON_IN_SANDBOX) for path in paths
    ):
        problems.append(f"the interpreter shows host paths: {paths}")
    if problems:
        raise SandboxUnavailableError(
            "the bubblewrap sandbox is not isolated: " + "; ".join(problems)
        )
