"""The tool worker: the program that runs INSIDE the sandbox, one process per episode.

Standard library only and no astra imports: it is bound read-only into the sandbox as this one
file and run as ``python -s -S -P -B worker.py LIMITS_JSON``. Start-up order matters: it applies
the resource limits, switches to the unprivileged host identity it is given (``run_as_uid``,
``run_as_gid``: when envhost is root) and takes the protocol pipes away from fds 0/1 *before*
any tool code runs.

Protocol (JSON lines; the host writes one request and reads one reply at a time)::

    -> {"id": 0, "op": "load", "tools": [{"name": ..., "code": ..., "entrypoint": ...}]}
    <- {"id": 0, "ok": true, "load_errors": {"<tool name>": "<why it failed to load>"}}
    -> {"id": 1, "op": "call", "tool": "<tool name>", "arguments": {...}}
    <- {"id": 1, "ok": true, "result": <any JSON>}
    <- {"id": 1, "ok": false, "error": "<message for the agent>"}

Each tool's code is executed once, into a module of its own, so its globals persist across the
episode's calls. The worker exits when its stdin closes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
import types
from collections.abc import Callable
from typing import IO, Any

MAX_ERROR_CHARS = 2000
"""Error messages (exception text) are cut to this many characters."""

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _lower_limit(which: int, soft: int, hard: int | None = None) -> None:
    """Set an rlimit, never above the hard limit already in force (which we could not raise)."""
    current_hard = resource.getrlimit(which)[1]
    hard = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def apply_limits(limits: dict[str, int]) -> None:
    """Apply the rlimits of ``SandboxLimits.worker_rlimits()`` to this process."""
    _lower_limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["worker_cpu_seconds"])
    _lower_limit(resource.RLIMIT_AS, limits["memory_bytes"])
    if "run_as_uid" not in limits:
        # In a user namespace of its own the count is this sandbox's. Switched to a host uid
        # that every sandbox shares, it would count all their threads together: not applied.
        _lower_limit(resource.RLIMIT_NPROC, limits["max_processes"])
    _lower_limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
    _lower_limit(resource.RLIMIT_FSIZE, limits["max_file_bytes"])
    _lower_limit(resource.RLIMIT_CORE, 0)
    # A write past RLIMIT_FSIZE then fails with EFBIG instead of killing the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def switch_identity(uid: int, gid: int) -> None:
    """Become host ``uid``/``gid`` with no supplementary group; exit unless that took.

    Started as root (by a root envhost, with no user namespace), the worker holds only the
    capabilities to switch ids; switching all three uids away from 0 clears them as well.
    """
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        sys.exit(f"the worker cannot switch to uid {uid} / gid {gid}: {exc}")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        sys.exit(f"the worker did not become uid {uid} / gid {gid}")
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        return
    sys.exit("the worker could switch back to uid 0 after dropping it")


def rearm_cpu_limit(cpu_seconds: int) -> None:
    """Give the next call ``cpu_seconds`` of CPU on top of what the worker has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = used + cpu_seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def take_protocol_pipes() -> tuple[IO[bytes], IO[bytes]]:
    """Move the protocol off fds 0/1 and point fds 0, 1 and 2 at /dev/null.

    Tool code that prints or reads stdin then cannot corrupt the protocol by accident, and
    cannot make the host read an endless stderr. Every other inherited descriptor is closed.
    """
    os.closerange(3, 1 << 16)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return requests, replies


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, cut to ``MAX_ERROR_CHARS``; never raises."""
    try:
        if isinstance(exc, SyntaxError) and exc.msg:
            text = f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
        else:
            message = str(exc)
            text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    except BaseException:  # a hostile __str__ must not take the worker down
        text = "exception (its message could not be rendered)"
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "... (truncated)"
    return text


class ToolWorker:
    """The tools of one episode, loaded once, and the request loop that serves them."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.cpu_seconds = limits["cpu_seconds"]
        self.max_output_bytes = limits["max_output_bytes"]
        self.entrypoints: dict[str, Callable[..., Any]] = {}

    def load(self, tools: list[dict[str, str]]) -> dict[str, str]:
        """Execute each tool's code in a module of its own; returns the load errors by tool."""
        errors: dict[str, str] = {}
        for index, tool in enumerate(tools):
            name = tool["name"]
            module = types.ModuleType(f"astra_tool_{index}")
            # Registered so that dataclasses, enum and typing can find the module by name.
            sys.modules[module.__name__] = module
            try:
                code = compile(tool["code"], f"<tool {name}>", "exec")
                exec(code, module.__dict__)
            except BaseException as exc:
                errors[name] = f"the tool's code failed to load: {describe_exception(exc)}"
                continue
            function = module.__dict__.get(tool["entrypoint"])
            if not callable(function):
                errors[name] = (
                    f"the tool's code defines no function {tool['entrypoint']!r} (its entrypoint)"
                )
                continue
            self.entrypoints[name] = function
        return errors

    def call(self, request_id: int, name: str, arguments: dict[str, Any]) -> bytes:
        """Run one tool and encode the reply line."""
        function = self.entrypoints.get(name)
        if function is None:
            return self.error(request_id, f"unknown tool {name!r}")
        rearm_cpu_limit(self.cpu_seconds)
        try:
            result = function(**arguments)
        except BaseException as exc:  # SystemExit and MemoryError included: the worker lives on
            return self.error(request_id, describe_exception(exc))
        try:
            encoded = _encode(result).encode("utf-8")
        except BaseException as exc:
            return self.error(
                request_id, f"the tool returned a value that is not JSON: {describe_exception(exc)}"
            )
        if len(encoded) > self.max_output_bytes:
            return self.error(
                request_id,
                f"output too large: {len(encoded)} bytes of JSON, "
                f"the limit is {self.max_output_bytes}",
            )
        return b'{"id":%d,"ok":true,"result":%s}\n' % (request_id, encoded)

    @staticmethod
    def error(request_id: int, message: str) -> bytes:
        return (_encode({"id": request_id, "ok": False, "error": message}) + "\n").encode()

    def handle(self, line: bytes) -> bytes:
        """Answer one request line (a reply with id -1 if the request cannot be read)."""
        request_id = -1
        try:
            request = json.loads(line)
            request_id = int(request["id"])
            op = request.get("op")
            if op == "call":
                return self.call(request_id, request["tool"], request["arguments"])
            if op == "load":
                errors = self.load(request["tools"])
                reply = {"id": request_id, "ok": True, "load_errors": errors}
                return (_encode(reply) + "\n").encode()
            return self.error(request_id, f"unknown op {op!r}")
        except Exception as exc:  # a bad request; stderr is /dev/null, so say it in the reply
            return self.error(request_id, f"the worker failed: {describe_exception(exc)}")

    def serve(self, requests: IO[bytes], replies: IO[bytes]) -> None:
        """Answer requests until stdin closes."""
        for line in requests:
            replies.write(self.handle(line))
            replies.flush()


def main(argv: list[str]) -> None:
    limits: dict[str, int] = json.loads(argv[1])
    apply_limits(limits)
    if "run_as_uid" in limits:
        switch_identity(limits["run_as_uid"], limits["run_as_gid"])
    requests, replies = take_protocol_pipes()
    ToolWorker(limits).serve(requests, replies)


if __name__ == "__main__":
    main(sys.argv)
