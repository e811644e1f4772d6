"""Hostile tool code in the bubblewrap sandbox: each attack fails or is cut off, the host is
unaffected, and the episode answers its next call normally."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from envhost_support import descendants

from astra_envhost.backends import ToolExecutionError
from astra_envhost.sandbox import SandboxBackend, SandboxLimits, find_bwrap
from astra_envhost.sandbox.command import InterpreterLayout, bubblewrap_worker_env
from astra_proto.tools import SyntheticTool, ToolSpec

pytestmark = pytest.mark.skipif(
    find_bwrap() is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(
    call_timeout_s=2,
    cpu_seconds=1,
    memory_bytes=128 * 1024 * 1024,
    max_output_bytes=64 * 1024,
    scratch_bytes=1024 * 1024,
    max_file_bytes=512 * 1024,
)
PING = SyntheticTool(
    spec=ToolSpec(name="ping", description="Answers pong."),
    code="calls = 0\ndef ping():\n    global calls\n    calls += 1\n    return {'pong': calls}",
    entrypoint="ping",
)


def attack_tool(code: str) -> SyntheticTool:
    return SyntheticTool(
        spec=ToolSpec(name="attack", description="Hostile code."),
        code=textwrap.dedent(code),
        entrypoint="attack",
    )


class Episode:
    """One sandboxed episode holding the attack and a harmless ``ping``."""

    def __init__(self, code: str, limits: SandboxLimits) -> None:
        self.backend = SandboxBackend([attack_tool(code), PING], mode="bubblewrap", limits=limits)

    async def attack(self, **arguments: Any) -> Any:
        return await self.backend.call("attack", arguments)

    async def assert_answers_next_call(self) -> None:
        reply = await self.backend.call("ping", {})
        assert set(reply) == {"pong"}


@asynccontextmanager
async def episode(code: str, limits: SandboxLimits = LIMITS) -> AsyncIterator[Episode]:
    """The episode; on leaving without error, it must still answer ``ping``."""
    hosted = Episode(code, limits)
    try:
        yield hosted
        await hosted.assert_answers_next_call()
    finally:
        await hosted.backend.close()


def existing(paths: list[str]) -> list[str]:
    """Those of ``paths`` that exist on the host."""
    return [path for path in paths if os.path.lexists(path)]


@pytest.fixture
def secret_files() -> Iterator[dict[str, str]]:
    """A secret written in the repo checkout and in the host's /tmp: path -> content."""
    token = uuid.uuid4().hex
    files = {
        REPO_ROOT / f".sandbox-secret-{token}": f"repo-secret-{token}",
        Path("/tmp") / f"sandbox-secret-{token}": f"tmp-secret-{token}",
    }
    for path, content in files.items():
        path.write_text(content)
    try:
        yield {str(path): content for path, content in files.items()}
    finally:
        for path in files:
            path.unlink()


async def test_network_is_unreachable_even_on_loopback() -> None:
    connections = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = """
    import socket
    def attack(port):
        outcome = {"interfaces": [name for _, name in socket.if_nameindex()]}
        for host in ("127.0.0.1", "10.0.2.2", "1.1.1.1"):
            try:
                socket.create_connection((host, port), timeout=1).close()
                outcome[host] = "connected"
            except OSError as exc:
                outcome[host] = type(exc).__name__
        try:
            socket.getaddrinfo("example.com", 80)
            outcome["dns"] = "resolved"
        except OSError as exc:
            outcome["dns"] = type(exc).__name__
        return outcome
    """
    try:
        async with episode(code) as box:
            outcome = await box.attack(port=port)
    finally:
        server.close()
        await server.wait_closed()
    assert outcome["interfaces"] == ["lo"]
    assert "connected" not in outcome.values()
    assert outcome["dns"] != "resolved"
    assert connections == 0


async def test_host_files_are_not_visible(secret_files: dict[str, str]) -> None:
    code = """
    import os
    def attack(paths):
        outcome = {}
        for path in paths:
            try:
                if os.path.isdir(path):
                    outcome[path] = sorted(os.listdir(path))
                else:
                    with open(path, errors="replace") as handle:
                        outcome[path] = handle.read()
            except OSError as exc:
                outcome[path] = type(exc).__name__
        return outcome
    """
    paths = [
        *secret_files,
        "/etc/shadow",
        "/etc/passwd",
        str(REPO_ROOT),
        str(REPO_ROOT / "pyproject.toml"),
        str(REPO_ROOT / ".venv"),
        "/home",
        "/root/.bash_history",
        "/proc/1/environ",
    ]
    async with episode(code) as box:
        outcome = await box.attack(paths=paths)
    for path in [*secret_files, "/etc/shadow", "/etc/passwd", str(REPO_ROOT), "/home"]:
        assert outcome[path] == "FileNotFoundError", path
    for path in [str(REPO_ROOT / "pyproject.toml"), str(REPO_ROOT / ".venv")]:
        assert outcome[path] == "FileNotFoundError", path
    assert outcome["/proc/1/environ"] == "FileNotFoundError"  # no /proc at all
    assert not any(secret in str(outcome) for secret in secret_files.values())


async def test_host_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("ASTRA_TEST_API_KEY", secret)
    code = """
    import os
    def attack():
        environs = {}
        try:
            pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
        except OSError as exc:
            pids, environs["/proc"] = [], type(exc).__name__
        for pid in pids:
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    environs[pid] = handle.read().decode(errors="replace")
            except OSError as exc:
                environs[pid] = type(exc).__name__
        return {"environ": dict(os.environ), "processes": environs}
    """
    async with episode(code) as box:
        outcome = await box.attack()
    assert "ASTRA_TEST_API_KEY" not in outcome["environ"]
    expected = bubblewrap_worker_env(InterpreterLayout.of_running_interpreter())
    assert set(outcome["environ"]) <= {*expected, "PWD"}
    assert outcome["processes"] == {"/proc": "FileNotFoundError"}  # no process is visible
    assert secret not in str(outcome)


async def test_nothing_outside_the_scratch_tmpfs_is_writable(tmp_path: Path) -> None:
    marker = f"inside-{uuid.uuid4().hex}.txt"
    code = """
    import os
    def attack(targets, marker):
        outcome = {}
        for path in targets:
            try:
                with open(path, "w") as handle:
                    handle.write("pwned")
                outcome[path] = "written"
            except OSError as exc:
                outcome[path] = type(exc).__name__
        with open(f"/tmp/{marker}", "w") as handle:
            handle.write("scratch")
        outcome["scratch"] = open(f"/tmp/{marker}").read()
        try:
            with open("/tmp/fill", "wb") as handle:
                for _ in range(64):
                    handle.write(b"x" * 65536)
                    handle.flush()
            outcome["fill"] = "written"
        except OSError as exc:
            outcome["fill"] = type(exc).__name__
        return outcome
    """
    host_target = tmp_path / "pwned.txt"
    stdlib = os.path.dirname(os.__file__)
    targets = [
        *["/usr/pwned", "/pwned", "/etc/pwned", "/dev/pwned", "/dev/shm/pwned", "/proc/pwned"],
        f"{stdlib}/pwned.py",
        str(host_target),
    ]
    async with episode(code) as box:
        outcome = await box.attack(targets=targets, marker=marker)
    assert all(outcome[path] != "written" for path in targets), outcome
    assert outcome["scratch"] == "scratch"
    assert outcome["fill"] == "OSError"  # RLIMIT_FSIZE / the 1 MiB tmpfs, not the host disk
    assert not existing([*targets, f"/tmp/{marker}"])


async def test_fork_bomb_is_contained() -> None:
    code = """
    import ctypes, os, subprocess, threading, time
    def attack():
        outcome = {"forks": 0}
        try:
            while outcome["forks"] < 100000:
                os.fork()  # a child would run this loop too
                outcome["forks"] += 1
        except OSError as exc:
            outcome["fork"] = type(exc).__name__
        libc = ctypes.CDLL(None, use_errno=True)
        fork_nr = {"x86_64": 57, "aarch64": 220}[os.uname().machine]  # fork / clone(SIGCHLD)
        outcome["raw_fork_syscall"] = libc.syscall(fork_nr, 17, 0, 0, 0, 0)
        outcome["raw_clone3"] = libc.syscall(435, 0, 0)
        try:
            subprocess.run(["/bin/sh", "-c", ":"], check=True)
            outcome["subprocess"] = "ran"
        except OSError as exc:
            outcome["subprocess"] = type(exc).__name__
        threads = []
        try:
            for _ in range(10000):
                thread = threading.Thread(target=time.sleep, args=(0.3,))
                thread.start()
                threads.append(thread)
        except RuntimeError:
            pass
        outcome["threads"] = len(threads)
        for thread in threads:
            thread.join()
        return outcome
    """
    ours_before = descendants(os.getpid())
    started = time.monotonic()
    async with episode(code) as box:
        outcome = await box.attack()
        sandbox_pid = box.backend.pid
        assert sandbox_pid is not None
        in_sandbox = descendants(sandbox_pid)  # bwrap, the sandbox's pid 1, the worker
    assert time.monotonic() - started < LIMITS.call_timeout_s + 5
    assert len(in_sandbox) <= 3
    assert descendants(os.getpid()) == ours_before
    assert outcome["forks"] == 0
    assert outcome["fork"] == "PermissionError"
    assert outcome["raw_fork_syscall"] == -1
    assert outcome["raw_clone3"] == -1
    assert outcome["subprocess"] == "PermissionError"
    assert outcome["threads"] < 200  # bounded by RLIMIT_AS (thread stacks) and RLIMIT_NPROC


async def test_infinite_loop_is_cut_off_and_the_host_stays_responsive() -> None:
    code = """
    import time
    def attack(kind):
        if kind == "spin":
            while True:
                pass
        time.sleep(3600)
    """
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    started = time.monotonic()
    try:
        # A busy loop is cut by RLIMIT_CPU (1 to 2 s of CPU: it counts whole seconds). The wall
        # clock is set far above, so that a loaded machine cannot let it win the race.
        async with episode(code, dataclasses.replace(LIMITS, call_timeout_s=15)) as box:
            with pytest.raises(ToolExecutionError, match="SIGXCPU: CPU time limit exceeded"):
                await box.attack(kind="spin")
        # A call that sleeps uses no CPU: the wall clock (2 s) cuts it.
        async with episode(code) as box:
            with pytest.raises(ToolExecutionError, match="timed out after 2s"):
                await box.attack(kind="sleep")
        elapsed = time.monotonic() - started
    finally:
        beating.cancel()
    assert ticks > elapsed / 0.05 * 0.25  # the host's event loop kept running meanwhile


async def test_memory_bomb_hits_the_address_space_limit() -> None:
    code = """
    def attack(kind):
        if kind == "at_once":
            blob = bytearray(1 << 30)
            return len(blob)
        hoard = []
        while True:
            hoard.append(bytearray(8 << 20))
    """
    async with episode(code) as box:
        with pytest.raises(ToolExecutionError, match=r"MemoryError|crashed"):
            await box.attack(kind="at_once")
        await box.assert_answers_next_call()
        with pytest.raises(ToolExecutionError, match=r"MemoryError|crashed"):
            await box.attack(kind="growing")


async def test_huge_or_forged_output_cannot_flood_the_host() -> None:
    code = """
    import os, sys
    def attack(kind):
        if kind == "result":
            return "x" * (10 << 20)
        if kind == "stderr":
            sys.stderr.write("y" * (8 << 20))
            os.write(2, b"z" * (1 << 20))
            return "survived"
        for fd in range(3, 16):  # find the protocol pipe and write to it directly
            try:
                os.write(fd, b"garbage\\n" if kind == "garbage" else b"{" * (4 << 20))
            except OSError:
                pass
        return "done"
    """
    async with episode(code) as box:
        with pytest.raises(ToolExecutionError, match="output too large"):
            await box.attack(kind="result")
        assert await box.attack(kind="stderr") == "survived"
        await box.assert_answers_next_call()
        with pytest.raises(ToolExecutionError, match="larger than the output limit"):
            await box.attack(kind="flood")
        await box.assert_answers_next_call()
        with pytest.raises(ToolExecutionError, match="malformed reply"):
            await box.attack(kind="garbage")


async def test_os_subprocess_ctypes_and_socket_reach_nothing() -> None:
    code = """
    import ctypes, os, signal, socket, subprocess
    def attack():
        outcome = {"uid": os.getuid(), "pid": os.getpid(), "hostname": socket.gethostname()}
        for name, action in {
            "ls_work": lambda: subprocess.run(["ls", "/work"], capture_output=True),
            "system": lambda: os.system("id > /tmp/x"),
            "listdir_work": lambda: os.listdir("/work"),
            "chroot": lambda: os.chroot("/tmp"),
            "unix_socket": lambda: socket.socket(socket.AF_UNIX).connect("/run/docker.sock"),
            "kill_all": lambda: os.kill(-1, signal.SIGKILL),
            "setuid_root": lambda: os.setuid(0),
        }.items():
            try:
                outcome[name] = repr(action())
            except Exception as exc:
                outcome[name] = type(exc).__name__
        libc = ctypes.CDLL(None, use_errno=True)
        outcome["libc_system"] = libc.system(b"ls /work")
        outcome["unshare_user"] = libc.unshare(0x10000000)
        outcome["ptrace"] = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to pid 1
        outcome["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
        return outcome
    """
    async with episode(code) as box:
        outcome = await box.attack()
    assert outcome["uid"] == 65534
    assert outcome["hostname"] == "sandbox"
    assert outcome["pid"] < 10  # its own pid namespace
    assert outcome["ls_work"] == "PermissionError"
    assert outcome["listdir_work"] == "FileNotFoundError"
    assert outcome["chroot"] == "PermissionError"
    assert outcome["unix_socket"] == "FileNotFoundError"
    assert outcome["setuid_root"] in ("PermissionError", "OSError")  # uid 0 is not even mapped
    assert outcome["system"] != "0"
    assert outcome["libc_system"] != 0
    for call in ("unshare_user", "ptrace", "mount"):
        assert outcome[call] == -1, call
    assert existing([str(REPO_ROOT)])  # and the host carries on, unaffected


def host_sysctls() -> dict[str, str]:
    """Host-wide kernel settings (not namespaced) and their current values, as the host reads
    them. Tool code writes back the same value: the point is whether the write is accepted."""
    paths = ["/proc/sys/vm/swappiness", "/proc/sys/kernel/printk", "/proc/sys/fs/file-max"]
    values = {}
    for path in paths:
        with contextlib.suppress(OSError):
            values[path] = Path(path).read_text()
    return values


async def test_host_kernel_settings_cannot_be_changed() -> None:
    code = """
    import os
    def attack(settings):
        outcome = {}
        for path, value in settings.items():
            try:
                with open(path, "w") as handle:
                    handle.write(value)  # the host's own value: accepted means writable
                outcome[path] = "written"
            except OSError as exc:
                outcome[path] = type(exc).__name__
        for path in ["/proc/sysrq-trigger", "/sys/kernel/mm/transparent_hugepage/enabled",
                     "/sys/kernel/uevent_helper", "/proc/sys/kernel/hostname"]:
            try:
                os.close(os.open(path, os.O_WRONLY))  # opened only: nothing is written
                outcome[path] = "opened for writing"
            except OSError as exc:
                outcome[path] = type(exc).__name__
        return outcome
    """
    settings = host_sysctls()
    assert settings, "no host sysctl readable here"
    async with episode(code) as box:
        outcome = await box.attack(settings=settings)
    refused = ("FileNotFoundError", "PermissionError", "OSError")  # no /proc; or not allowed
    assert not [path for path, result in outcome.items() if result not in refused], outcome
    assert host_sysctls() == settings


async def test_kernel_and_process_information_is_not_reachable() -> None:
    code = """
    import os
    def attack():
        outcome = {}
        for path in ["/proc/kallsyms", "/proc/kcore", "/proc/self/mountinfo", "/proc/1/cmdline",
                     "/proc/self/status", "/proc/keys", "/sys/kernel/notes", "/sys/fs/cgroup"]:
            try:
                with open(path, "rb") as handle:
                    outcome[path] = handle.read(64).hex()
            except OSError as exc:
                outcome[path] = type(exc).__name__
        outcome["root"] = sorted(os.listdir("/"))
        return outcome
    """
    async with episode(code) as box:
        outcome = await box.attack()
    root = outcome.pop("root")
    assert not [path for path, result in outcome.items() if result != "FileNotFoundError"], outcome
    assert "proc" not in root, root
    assert "sys" not in root, root


async def test_no_host_path_is_visible_to_tool_code() -> None:
    code = """
    import os, sys, traceback
    def attack():
        outcome = {
            "executable": sys.executable, "path": sys.path, "prefix": sys.prefix,
            "base_prefix": sys.base_prefix, "exec_prefix": sys.exec_prefix,
            "os": os.__file__, "main": getattr(sys.modules["__main__"], "__file__", None),
            "environ": dict(os.environ), "cwd": os.getcwd(),
        }
        for path in ["/proc/self/mountinfo", "/proc/self/mounts", "/proc/1/cmdline",
                     "/proc/self/cmdline", "/proc/1/environ", "/proc/self/environ"]:
            try:
                with open(path, "rb") as handle:
                    outcome[path] = handle.read().decode(errors="replace")
            except OSError as exc:
                outcome[path] = type(exc).__name__
        try:
            outcome["exe"] = os.readlink("/proc/self/exe")
        except OSError as exc:
            outcome["exe"] = type(exc).__name__
        try:
            import json
            json.loads("{not json")
        except ValueError:
            outcome["traceback"] = traceback.format_exc()
        return outcome
    """
    interpreter = InterpreterLayout.of_running_interpreter()
    host_paths = {
        str(REPO_ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix, interpreter.executable,
        interpreter.stdlib, "/root/", "/work/",
    }  # fmt: skip
    async with episode(code) as box:
        outcome = await box.attack()
    seen = str(outcome)
    assert not [path for path in host_paths if path in seen], [
        seen[max(0, seen.find(path) - 200) : seen.find(path) + 50]
        for path in host_paths
        if path in seen
    ]
    assert outcome["executable"].startswith("/sandbox/")
    assert "/sandbox/" in outcome["traceback"]


def worker_host_process(bwrap_pid: int) -> int:
    """Host pid of the interpreter in the sandbox (below bwrap and the sandbox's pid 1)."""
    workers = []
    for pid in descendants(bwrap_pid):
        with open(f"/proc/{pid}/stat", "rb") as stat:
            command = stat.read().split(b"(", 1)[1].rsplit(b")", 1)[0]
        if command != b"bwrap":
            workers.append(pid)
    assert len(workers) == 1, workers
    return workers[0]


def status_fields(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)


async def test_tool_code_runs_as_an_unprivileged_host_identity() -> None:
    code = """
    import ctypes, os, sys
    def attack():
        libc = ctypes.CDLL(None, use_errno=True)
        return {
            "uid": os.getresuid(), "gid": os.getresgid(), "groups": os.getgroups(),
            "no_new_privs": libc.prctl(39, 0, 0, 0, 0),  # PR_GET_NO_NEW_PRIVS
            # a set-user-ID program could not raise it either: every mount is nosuid
            "suid_mounts": [path for path in ("/", "/usr", "/tmp", "/dev", sys.executable)
                            if not os.statvfs(path).f_flag & os.ST_NOSUID],
        }
    """
    async with episode(code) as box:
        inside = await box.attack()
        bwrap_pid = box.backend.pid
        assert bwrap_pid is not None
        status = status_fields(worker_host_process(bwrap_pid))
    host_uids = {int(uid) for uid in status["Uid"].split()}
    host_gids = {int(gid) for gid in status["Gid"].split()}
    assert 0 not in host_uids, status
    assert 0 not in host_gids, status
    if os.geteuid() == 0:  # a root envhost hands tool code to nobody/nogroup
        assert host_uids == host_gids == {65534}
    else:  # an ordinary envhost's code runs as that user, who cannot switch
        assert host_uids == {os.geteuid()}
    assert status["Groups"].split() == []
    for capabilities in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[capabilities], 16) == 0, status
    # What bwrap left inheritable (CAP_SETUID, CAP_SETGID for the switch) grants nothing
    # under no_new_privs: an exec cannot raise the permitted set.
    assert int(status["CapInh"], 16) & ~0xC0 == 0, status
    assert int(status["NoNewPrivs"]) == 1, status
    assert inside == {
        "uid": [65534] * 3, "gid": [65534] * 3, "groups": [], "no_new_privs": 1, "suid_mounts": []
    }  # fmt: skip
