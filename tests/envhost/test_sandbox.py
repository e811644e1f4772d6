"""SandboxBackend: real worker processes (bubblewrap, and the unsandboxed development mode)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from envhost_support import descendants

from astra_envhost.backends import EpisodeBackend, ToolExecutionError
from astra_envhost.sandbox import (
    SandboxBackend,
    SandboxLimits,
    SandboxMode,
    SandboxUnavailableError,
    check_sandbox_available,
    find_bwrap,
)
from astra_envhost.sandbox.command import (
    NOBODY,
    PYTHON_IN_SANDBOX,
    WORKER_IN_SANDBOX,
    WORKER_SOURCE,
    InterpreterLayout,
    default_host_identity,
    worker_command,
)
from astra_envhost.sandbox.process import WorkerProcess
from astra_envhost.sandbox.seccomp import SeccompUnsupportedError, build_filter
from astra_proto.tools import SyntheticTool, ToolSpec

pytestmark = pytest.mark.skipif(
    find_bwrap() is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
)

MODES: list[SandboxMode] = ["bubblewrap", "none"]
FAST = SandboxLimits(call_timeout_s=2, cpu_seconds=1, start_timeout_s=10)

COUNTER = """
count = 0

def bump(by=1):
    global count
    count += by
    return count
"""
ECHO = """
def echo(**arguments):
    return arguments
"""


def tool(name: str, code: str, entrypoint: str = "run") -> SyntheticTool:
    return SyntheticTool(
        spec=ToolSpec(name=name, description=f"Test tool {name}."),
        code=textwrap.dedent(code),
        entrypoint=entrypoint,
    )


@asynccontextmanager
async def sandbox(
    tools: Sequence[SyntheticTool], mode: SandboxMode = "bubblewrap", limits: SandboxLimits = FAST
) -> AsyncIterator[SandboxBackend]:
    backend = SandboxBackend(tools, mode=mode, limits=limits)
    try:
        yield backend
    finally:
        await backend.close()


def worker_pid(box: SandboxBackend) -> int:
    pid = box.pid
    assert pid is not None
    return pid


def alive(pid: int) -> bool:
    """The process exists, zombies included (so a passing check also means: reaped)."""
    return os.path.exists(f"/proc/{pid}")


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", MODES)
async def test_tools_load_run_and_keep_state_across_calls(mode: SandboxMode) -> None:
    async with sandbox([tool("bump", COUNTER, "bump"), tool("echo", ECHO, "echo")], mode) as box:
        assert await box.call("bump", {}) == 1
        assert await box.call("echo", {"a": 1}) == {"a": 1}
        assert await box.call("bump", {"by": 10}) == 11


async def test_sandbox_backend_is_an_episode_backend() -> None:
    backend: EpisodeBackend = SandboxBackend([tool("echo", ECHO, "echo")], mode="bubblewrap")
    await backend.close()


async def test_two_episodes_do_not_share_state() -> None:
    tools = [tool("bump", COUNTER, "bump")]
    async with sandbox(tools) as first, sandbox(tools) as second:
        assert await first.call("bump", {"by": 5}) == 5
        assert await first.call("bump", {"by": 5}) == 10
        assert await second.call("bump", {}) == 1
        assert first.pid != second.pid


async def test_tools_of_one_episode_have_separate_module_namespaces() -> None:
    setter = tool("set_x", "x = 'mine'\ndef run():\n    global x\n    x = 'changed'\n    return x")
    getter = tool("get_x", "x = 'other'\ndef run():\n    return x")
    async with sandbox([setter, getter]) as box:
        assert await box.call("set_x", {}) == "changed"
        assert await box.call("get_x", {}) == "other"


async def test_arguments_and_results_round_trip_as_json() -> None:
    payload = {
        "text": 'héllo 世界 🌍 "quoted" \\ \n newline \u2028',
        "nested": {"list": [1, 2.5, -3, None, True, False], "deep": {"a": {"b": {"c": []}}}},
        "big": 2**62,
        "empty": {},
    }
    async with sandbox([tool("echo", ECHO, "echo")]) as box:
        assert await box.call("echo", payload) == payload


async def test_tool_exception_is_a_tool_execution_error_with_type_and_message() -> None:
    code = "def run(city):\n    raise ValueError(f'unknown city {city!r}')"
    async with sandbox([tool("lookup", code), tool("bump", COUNTER, "bump")]) as box:
        assert await box.call("bump", {}) == 1
        with pytest.raises(ToolExecutionError, match=r"^ValueError: unknown city 'Atlantis'$"):
            await box.call("lookup", {"city": "Atlantis"})
        assert await box.call("bump", {}) == 2  # the same worker: state kept


async def test_long_exception_messages_are_truncated() -> None:
    async with sandbox([tool("loud", "def run():\n    raise RuntimeError('x' * 100000)")]) as box:
        with pytest.raises(ToolExecutionError, match=r"truncated") as caught:
            await box.call("loud", {})
    assert len(str(caught.value)) < 3000


async def test_wrong_arguments_and_system_exit_are_tool_errors() -> None:
    one = tool("one", "def run(x):\n    return x")
    quit_ = tool("quit", "import sys\ndef run():\n    sys.exit(4)")
    async with sandbox([one, quit_]) as box:
        with pytest.raises(ToolExecutionError, match="TypeError"):
            await box.call("one", {"y": 1})
        with pytest.raises(ToolExecutionError, match="SystemExit: 4"):
            await box.call("quit", {})
        assert await box.call("one", {"x": 7}) == 7


async def test_syntax_error_is_reported_on_that_tool_only() -> None:
    broken = tool("broken", "def run(:\n    pass")
    async with sandbox([broken, tool("bump", COUNTER, "bump")]) as box:
        with pytest.raises(ToolExecutionError, match=r"failed to load: SyntaxError: .*line 1"):
            await box.call("broken", {})
        assert await box.call("bump", {}) == 1
        with pytest.raises(ToolExecutionError, match="failed to load"):
            await box.call("broken", {})


async def test_code_failing_at_import_or_missing_its_entrypoint() -> None:
    raising = tool("raising", "import json\nraise ImportError('no numpy here')\ndef run(): pass")
    missing = tool("missing", "def something_else():\n    return 1")
    async with sandbox([raising, missing]) as box:
        with pytest.raises(ToolExecutionError, match="ImportError: no numpy here"):
            await box.call("raising", {})
        with pytest.raises(ToolExecutionError, match="defines no function 'run'"):
            await box.call("missing", {})


async def test_unknown_tool_is_refused_without_starting_a_worker() -> None:
    async with sandbox([tool("bump", COUNTER, "bump")]) as box:
        with pytest.raises(
            ToolExecutionError, match=r"unknown tool 'nope' \(this episode has: bump"
        ):
            await box.call("nope", {})
        assert box.pid is None


@pytest.mark.parametrize(
    ("returned", "reason"),
    [("{1, 2}", "not JSON: TypeError"), ("float('nan')", "not JSON: ValueError"),
     ("object()", "not JSON: TypeError"), ("'\\ud800'", "not JSON: UnicodeEncodeError")],
)  # fmt: skip
async def test_a_result_that_is_not_json_is_an_error(returned: str, reason: str) -> None:
    odd = tool("odd", f"def run():\n    return {returned}")
    async with sandbox([odd, tool("bump", COUNTER, "bump")]) as box:
        assert await box.call("bump", {}) == 1
        with pytest.raises(ToolExecutionError, match=reason):
            await box.call("odd", {})
        assert await box.call("bump", {}) == 2


async def test_print_and_stdin_reads_do_not_disturb_the_protocol() -> None:
    code = """
    import sys
    def run():
        print("noise\\n" * 1000)
        sys.stderr.write("more noise\\n" * 1000)
        return {"stdin": sys.stdin.read()}
    """
    async with sandbox([tool("noisy", code)]) as box:
        assert await box.call("noisy", {}) == {"stdin": ""}
        assert await box.call("noisy", {}) == {"stdin": ""}


async def test_parallel_calls_are_served_one_at_a_time_and_each_gets_its_own_reply() -> None:
    code = """
    import time
    busy = False
    order = []

    def run(n):
        global busy
        if busy:
            raise RuntimeError("two calls ran at once")
        busy = True
        time.sleep(0.002)
        order.append(n)
        busy = False
        return {"n": n, "position": len(order)}
    """
    async with sandbox([tool("work", code)]) as box:
        replies = await asyncio.gather(*(box.call("work", {"n": n}) for n in range(30)))
    assert [reply["n"] for reply in replies] == list(range(30))
    assert sorted(reply["position"] for reply in replies) == list(range(1, 31))


async def test_worker_starts_lazily_and_close_kills_every_process() -> None:
    box = SandboxBackend([tool("bump", COUNTER, "bump")], mode="bubblewrap", limits=FAST)
    before = descendants(os.getpid())
    assert box.pid is None
    assert descendants(os.getpid()) == before
    assert await box.call("bump", {}) == 1
    sandbox_processes = descendants(worker_pid(box))
    assert len(sandbox_processes) >= 2  # bwrap, the sandbox's pid 1 and the worker
    await box.close()
    await box.close()  # idempotent
    assert not any(alive(pid) for pid in sandbox_processes)  # reaped: no zombies either
    assert descendants(os.getpid()) == before
    with pytest.raises(ToolExecutionError, match="episode is closed"):
        await box.call("bump", {})


async def test_close_during_a_call_ends_that_call() -> None:
    waiter = tool("wait", "import time\ndef run():\n    time.sleep(30)")
    box = SandboxBackend([waiter], mode="bubblewrap", limits=SandboxLimits(call_timeout_s=30))
    call = asyncio.create_task(box.call("wait", {}))
    for _ in range(500):  # until the worker runs (bounded: 5 s)
        if box.pid is not None:
            break
        await asyncio.sleep(0.01)
    assert box.pid is not None
    pids = descendants(box.pid)
    await box.close()
    with pytest.raises(ToolExecutionError, match="episode is closed"):
        await asyncio.wait_for(call, 5)
    assert not any(alive(pid) for pid in pids)


async def test_timeout_restarts_the_worker_and_resets_state() -> None:
    sleeper = tool("sleep", "import time\ndef run():\n    time.sleep(60)")
    async with sandbox([sleeper, tool("bump", COUNTER, "bump")]) as box:
        assert await box.call("bump", {}) == 1
        first_pid = box.pid
        with pytest.raises(ToolExecutionError, match=r"timed out after 2s.*state was reset"):
            await box.call("sleep", {})
        assert box.pid is None
        assert await box.call("bump", {}) == 1  # a fresh worker
        assert box.pid != first_pid


async def test_a_cancelled_call_leaves_the_episode_usable() -> None:
    sleeper = tool("sleep", "import time\ndef run():\n    time.sleep(60)")
    async with sandbox([sleeper, tool("bump", COUNTER, "bump")]) as box:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(box.call("sleep", {}), 0.5)
        assert await box.call("bump", {}) == 1


async def test_a_crash_is_reported_and_the_next_call_gets_a_fresh_worker() -> None:
    crash = tool("crash", "import os\ndef run():\n    os._exit(7)")
    segv = tool("segv", "import ctypes\ndef run():\n    ctypes.string_at(0)")
    async with sandbox([crash, segv, tool("bump", COUNTER, "bump")]) as box:
        assert await box.call("bump", {}) == 1
        with pytest.raises(ToolExecutionError, match=r"sandbox crashed \(exit code 7\)"):
            await box.call("crash", {})
        assert await box.call("bump", {}) == 1
        with pytest.raises(ToolExecutionError, match=r"crashed \(killed by signal SIGSEGV"):
            await box.call("segv", {})
        assert await box.call("bump", {}) == 1


async def test_output_over_the_cap_is_an_error_and_the_worker_lives_on() -> None:
    limits = SandboxLimits(call_timeout_s=5, max_output_bytes=10_000)
    big = tool("big", "def run(n):\n    return 'x' * n")
    async with sandbox([big, tool("bump", COUNTER, "bump")], limits=limits) as box:
        assert await box.call("bump", {}) == 1
        assert len(await box.call("big", {"n": 9_000})) == 9_000
        with pytest.raises(ToolExecutionError, match=r"output too large: 20002 bytes"):
            await box.call("big", {"n": 20_000})
        assert await box.call("bump", {}) == 2  # same worker, state kept


async def test_non_json_arguments_are_refused_on_the_host() -> None:
    async with sandbox([tool("echo", ECHO, "echo")]) as box:
        for unencodable in (object(), float("nan"), "\ud800"):
            with pytest.raises(ToolExecutionError, match="arguments are not JSON"):
                await box.call("echo", {"x": unencodable})
        assert box.pid is None


def test_duplicate_tool_names_and_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        SandboxBackend([tool("a", ECHO, "echo"), tool("a", ECHO, "echo")], mode="none")
    with pytest.raises(ValueError, match="call_timeout_s must be positive"):
        SandboxLimits(call_timeout_s=0)
    with pytest.raises(ValueError, match="worker_cpu_seconds"):
        SandboxLimits(cpu_seconds=20, worker_cpu_seconds=10)


@pytest.mark.parametrize("mode", MODES)
def test_start_up_check_passes_here(mode: SandboxMode) -> None:
    check_sandbox_available(mode)


def test_start_up_check_reports_why_bubblewrap_fails() -> None:
    with pytest.raises(SandboxUnavailableError, match="could not run python"):
        check_sandbox_available("bubblewrap", bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailableError, match=r"failed to run a trivial tool.*stderr"):
        check_sandbox_available("bubblewrap", bwrap="/bin/false")


async def test_a_bwrap_that_cannot_start_is_a_tool_error() -> None:
    box = SandboxBackend([tool("echo", ECHO, "echo")], mode="bubblewrap", bwrap="/nowhere/bwrap")
    with pytest.raises(ToolExecutionError, match="could not be started"):
        await box.call("echo", {})
    await box.close()


def test_bubblewrap_command_binds_no_host_tree_but_the_interpreter() -> None:
    argv = worker_command("bubblewrap", FAST, bwrap="/usr/bin/bwrap", seccomp_fd=3, info_fd=4)
    for flag in ("--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv
    binds = {argv[i + 1]: argv[i + 2] for i, arg in enumerate(argv) if arg == "--ro-bind"}
    assert binds.pop(str(WORKER_SOURCE)) == WORKER_IN_SANDBOX  # the one file of the repo
    assert binds.pop("/usr") == "/usr"
    interpreter = InterpreterLayout.of_running_interpreter()
    assert binds.pop(interpreter.executable) == interpreter.executable_in_sandbox
    assert binds.pop(interpreter.stdlib) == interpreter.stdlib_in_sandbox
    if interpreter.libpython:
        assert binds.pop(interpreter.libpython).startswith(f"{PYTHON_IN_SANDBOX}/")
    for source, target in binds.items():  # what is left: the real /lib* directories, if any
        assert source == target, source
        assert source.startswith(("/lib", "/bin", "/sbin")), source
    assert "--bind" not in argv  # nothing of the host is writable
    assert "--proc" not in argv  # no kernel interface at all
    assert "/sys" not in argv
    assert argv[argv.index("--") + 1] == interpreter.executable_in_sandbox
    scratch = next(i for i, arg in enumerate(argv) if argv[i - 1 : i + 1] == ["--tmpfs", "/tmp"])
    assert argv[scratch - 3 : scratch - 1] == ["--size", str(FAST.scratch_bytes)]


def test_a_root_envhost_runs_tool_code_as_nobody_without_a_user_namespace() -> None:
    argv = worker_command("bubblewrap", FAST, bwrap="/usr/bin/bwrap", run_as=NOBODY)
    # A user namespace made by root would map the sandbox to host uid 0.
    assert "--unshare-user" not in argv
    assert "--unshare-all" not in argv
    for namespace in ("pid", "net", "ipc", "uts"):
        assert f"--unshare-{namespace}" in argv
    caps = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--cap-add"]
    assert argv[argv.index("--cap-add") - 2 : argv.index("--cap-add")] == ["--cap-drop", "ALL"]
    assert sorted(caps) == ["CAP_SETGID", "CAP_SETUID"]  # the worker's switch, and no more
    worker_settings = json.loads(argv[-1])
    assert (worker_settings["run_as_uid"], worker_settings["run_as_gid"]) == (65534, 65534)


def test_an_ordinary_envhost_gets_a_user_namespace_and_no_identity_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_host_identity() is None
    argv = worker_command("bubblewrap", FAST, bwrap="/usr/bin/bwrap")
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == argv[argv.index("--gid") + 1] == "65534"
    assert "--cap-add" not in argv
    assert "run_as_uid" not in json.loads(argv[-1])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_host_identity() == NOBODY


async def test_the_user_namespace_shape_runs_tools_at_neutral_paths() -> None:
    """What an ordinary envhost runs (here started by whoever runs the tests)."""
    code = """
    import os, sys
    def run():
        return {"ids": [*os.getresuid(), *os.getresgid()], "proc": os.path.exists("/proc"),
                "executable": sys.executable, "tmp": os.access("/tmp", os.W_OK)}
    """
    worker = await WorkerProcess.start("bubblewrap", FAST, run_as=None)
    try:
        request = {"op": "load", "tools": [{"name": "t", "code": textwrap.dedent(code),
                                            "entrypoint": "run"}]}  # fmt: skip
        assert (await worker.request(request, 10))["load_errors"] == {}
        reply = await worker.request({"op": "call", "tool": "t", "arguments": {}}, 10)
    finally:
        await worker.stop()
    assert reply["result"] == {
        "ids": [65534] * 6,
        "proc": False,
        "executable": InterpreterLayout.of_running_interpreter().executable_in_sandbox,
        "tmp": True,
    }
    if os.geteuid() == 0:  # that shape would map the sandbox to host root: never chosen here
        with pytest.raises(SandboxUnavailableError, match="would keep host uid 0"):
            check_sandbox_available("bubblewrap", run_as=None)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root envhost switches tool code's uid")
def test_start_up_check_says_why_the_unprivileged_identity_cannot_import(tmp_path: Path) -> None:
    real = InterpreterLayout.of_running_interpreter()
    assert real.dynload is not None
    dynload = tmp_path / "lib-dynload"
    shutil.copytree(real.dynload, dynload)
    layout = dataclasses.replace(real, dynload=str(dynload))
    dynload.chmod(0o755)  # its host parents stay private to root: bwrap binds it as root
    check_sandbox_available("bubblewrap", interpreter=layout)  # the copy itself works
    dynload.chmod(0o700)
    with pytest.raises(
        SandboxUnavailableError, match=rf"uid 65534 / gid 65534, which cannot read {dynload}"
    ):
        check_sandbox_available("bubblewrap", interpreter=layout)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root envhost switches tool code's uid")
def test_a_worker_that_cannot_switch_ids_exits_before_reading_any_request() -> None:
    argv = worker_command("bubblewrap", FAST, run_as=NOBODY)
    cap_adds = [i for i, arg in enumerate(argv) if arg == "--cap-add"]
    without_caps = [
        arg for i, arg in enumerate(argv) if i not in {*cap_adds, *(i + 1 for i in cap_adds)}
    ]
    load = {"id": 0, "op": "load", "tools": [{"name": "t", "code": ECHO, "entrypoint": "echo"}]}
    completed = subprocess.run(
        without_caps, input=json.dumps(load).encode() + b"\n", capture_output=True,
        env={"PATH": "/usr/bin:/bin"}, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode != 0
    assert completed.stdout == b""  # not a single reply: tool code never ran as root
    assert b"cannot switch to uid 65534 / gid 65534" in completed.stderr


ORDINARY_USER_SCRIPT = """
import asyncio, json, os, site, sys
site.addsitedir(sys.argv[1])  # the test environment's packages, for this plain interpreter
from astra_envhost.sandbox import SandboxBackend, check_sandbox_available
from astra_proto.tools import SyntheticTool, ToolSpec

CODE = '''
import os, sys
def run():
    try:
        with open("/proc/sys/vm/swappiness", "r+") as handle:
            handle.write(handle.read())
        sysctl = "written"
    except OSError as exc:
        sysctl = type(exc).__name__
    return {"ids": [*os.getresuid(), *os.getresgid()], "sysctl": sysctl,
            "executable": sys.executable}
'''

def worker_uid_lines(bwrap_pid):
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                parents[int(pid)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
    below, grew = {bwrap_pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in below} - below
        below, grew = below | more, bool(more)
    lines = []
    for pid in below:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if not cmdline.read().startswith(b"/sandbox/python/"):
                continue
        with open(f"/proc/{pid}/status") as status:
            lines += [line for line in status if line.startswith("Uid:")]
    return lines

async def main():
    check_sandbox_available("bubblewrap")
    tool = SyntheticTool(spec=ToolSpec(name="t", description="t"), code=CODE, entrypoint="run")
    box = SandboxBackend([tool], mode="bubblewrap")
    try:
        inside = await box.call("t", {})
        uid_lines = worker_uid_lines(box.pid)
    finally:
        await box.close()
    print(json.dumps({"inside": inside, "host_uid_lines": uid_lines}))

asyncio.run(main())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_an_envhost_run_by_an_ordinary_user_sandboxes_tools_as_that_user() -> None:
    """envhost not root: bwrap builds a user namespace; tool code is that user on the host."""
    major, minor = sys.version_info[:2]
    plain = shutil.which(f"python{major}.{minor}", path="/usr/bin:/usr/local/bin")
    if plain is None:
        pytest.skip(f"no python{major}.{minor} that an ordinary user can run")
    ordinary = 4242  # no account needed: a uid that owns nothing here
    site_packages = sysconfig.get_paths()["purelib"]
    completed = subprocess.run(
        [plain, "-s", "-c", ORDINARY_USER_SCRIPT, site_packages],
        user=ordinary, group=ordinary, extra_groups=[], cwd="/",
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "ModuleNotFoundError: No module named 'astra" in completed.stderr:
        pytest.skip("this test environment's packages are not readable by other users")
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout)
    assert outcome["inside"]["ids"] == [65534] * 6  # mapped to the ordinary user
    assert outcome["inside"]["sysctl"] == "FileNotFoundError"
    assert outcome["inside"]["executable"].startswith(f"{PYTHON_IN_SANDBOX}/")
    assert [line.split()[1:] for line in outcome["host_uid_lines"]] == [[str(ordinary)] * 4]


def test_seccomp_filter_exists_for_x86_64_and_aarch64_only() -> None:
    for machine in ("x86_64", "aarch64"):
        program = build_filter(machine)
        assert len(program) % 8 == 0
        assert 40 < len(program) // 8 < 256
    with pytest.raises(SeccompUnsupportedError):
        build_filter("riscv64")


async def test_set_order_is_the_same_in_every_worker() -> None:
    """PYTHONHASHSEED is fixed, so a tool's output does not depend on the worker it ran in."""
    code = "def run():\n    return list({f'item-{i}' for i in range(50)})"
    async with (
        sandbox([tool("s", code)]) as first,
        sandbox([tool("s", code)], mode="none") as second,
    ):
        assert await first.call("s", {}) == await second.call("s", {})


async def test_no_descriptor_leaks_across_starts_crashes_and_closes() -> None:
    crash = tool("crash", "import os\ndef run():\n    os._exit(1)")
    opened_before = len(os.listdir("/proc/self/fd"))
    for mode in MODES:
        async with sandbox([crash, tool("bump", COUNTER, "bump")], mode) as box:
            for _ in range(3):
                assert await box.call("bump", {}) == 1
                with pytest.raises(ToolExecutionError, match="crashed"):
                    await box.call("crash", {})
    assert len(os.listdir("/proc/self/fd")) == opened_before


HOST_SCRIPT = """
import asyncio, os, sys
from astra_envhost.sandbox import SandboxBackend
from astra_proto.tools import SyntheticTool, ToolSpec

async def main():
    tool = SyntheticTool(
        spec=ToolSpec(name="t", description="t"), code="def run():\\n    return 1", entrypoint="run"
    )
    box = SandboxBackend([tool], mode="bubblewrap")
    await box.call("t", {})
    print(box.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_sandboxes_die_with_the_host_process() -> None:
    """A host killed outright leaves no sandbox behind (bwrap --die-with-parent)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT], stdout=subprocess.PIPE, text=True
    ) as host:
        assert host.stdout is not None
        bwrap_pid = int(host.stdout.readline())
        sandbox_processes = descendants(bwrap_pid)
        assert len(sandbox_processes) >= 2
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in sandbox_processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Orphaned, so reaping them is up to the host's init; they must not run any more.
    assert not any(running(pid) for pid in sandbox_processes)
