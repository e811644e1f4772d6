"""The start-up check: run one trivial tool in a real sandbox and verify its isolation."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from astra_envhost.sandbox.command import BWRAP_ENV, WORKER_ENV, find_bwrap, worker_command
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode
from astra_envhost.sandbox.seccomp import build_filter, seccomp_supported

_PROBE_CODE = """
import os
import socket

def probe():
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
    }
"""

_HINT = (
    "bubblewrap needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
    "kernel.unprivileged_userns_clone=1 on older Debian kernels); in a container, run it with "
    "a seccomp/AppArmor profile that allows them"
)


class SandboxUnavailableError(RuntimeError):
    """The requested sandbox cannot run here; the message says why."""


def check_sandbox_available(
    mode: SandboxMode, *, bwrap: str | None = None, timeout_s: float = 20.0
) -> None:
    """Run a trivial tool once in a sandbox of ``mode``; raise ``SandboxUnavailableError`` if
    it cannot run or (bubblewrap) is not isolated: network, fork and environment are checked.

    Blocking (tens of milliseconds): meant for service start-up.
    """
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
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "wb") as writer:
            writer.write(build_filter())
        pass_fds = (read_end,)
        argv = worker_command(mode, SandboxLimits(), bwrap=bwrap, seccomp_fd=read_end)
        env = dict(BWRAP_ENV)
    else:
        argv = worker_command(mode, SandboxLimits())
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
    probe = _probe_result(completed)
    if probe is None:
        stderr = completed.stderr.decode("utf-8", "replace").strip()[-500:]
        hint = f"; {_HINT}" if mode == "bubblewrap" else ""
        raise SandboxUnavailableError(
            f"the {mode} sandbox failed to run a trivial tool "
            f"(exit code {completed.returncode}; stderr: {stderr or 'empty'}){hint}"
        )
    if mode == "bubblewrap":
        _verify_isolation(probe)


def _probe_result(completed: subprocess.CompletedProcess[bytes]) -> dict[str, Any] | None:
    lines = completed.stdout.splitlines()
    if completed.returncode != 0 or len(lines) != 2:
        return None
    try:
        loaded, called = (json.loads(line) for line in lines)
    except ValueError:
        return None
    if loaded.get("load_errors") or not called.get("ok"):
        return None
    result = called.get("result")
    return result if isinstance(result, dict) else None


def _verify_isolation(probe: dict[str, Any]) -> None:
    problems = []
    if probe.get("interfaces") != ["lo"]:
        problems.append(f"network interfaces visible: {probe.get('interfaces')}")
    if probe.get("forked") is not False:
        problems.append("the seccomp filter did not refuse fork()")
    leaked = set(probe.get("environ", [])) - set(WORKER_ENV) - {"PWD"}
    if leaked:
        problems.append(f"host environment variables leaked: {sorted(leaked)}")
    if problems:
        raise SandboxUnavailableError(
            "the bubblewrap sandbox is not isolated: " + "; ".join(problems)
        )
