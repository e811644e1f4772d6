"""Training runs as child processes of the trainer service, one run directory each.

A run is ``python -m astra_trainer.cli {sft,grpo} --config <run_dir>/request.json``; its
state is what it writes in its run directory (``status.json``, ``metrics.jsonl``), so the
service can restart without losing track of finished runs. Stopping sends SIGTERM: a GRPO run
finishes the step in progress (entries acked) and exits; an SFT run is interrupted.

Every run ends with a final state. A watcher thread per run waits for its process, so a
finished process is reaped at once (no zombies), and a process that died without saying so
(SIGKILL, out of memory, a crash) gets ``failed`` with its exit code or signal written into
``status.json``. After a service restart, a run whose status still reads ``pending`` or
``running`` but whose process is gone reads ``failed`` too. At most ``max_concurrent_runs``
processes run at a time; more are refused with ``RunLimitError``. A data-parallel GRPO run
(``num_processes`` > 1) is one launcher process with its ranks as children, and counts once.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from astra_common.processes import spawn, tail
from astra_proto.api.trainer import RunStatus
from astra_trainer.run_files import read_status, write_json_atomic, write_status

REQUEST_FILE = "request.json"
LOG_FILE = "train.log"
_RUN_ID = re.compile(r"^[a-z]+-[0-9a-f]{12}$")
_UNFINISHED = ("pending", "running")

logger = logging.getLogger(__name__)


class RunNotFoundError(LookupError):
    """No run with that id."""


class RunLimitError(RuntimeError):
    """As many runs as allowed are running; the message names them and the setting."""

    def __init__(self, active: list[str], limit: int) -> None:
        self.active = active
        self.limit = limit
        super().__init__(
            f"the trainer runs at most {limit} run(s) at a time (setting max_concurrent_runs, "
            f"ASTRA_TRAINER_MAX_CONCURRENT_RUNS) and these are running: {', '.join(active)}; "
            "stop one (POST /v1/runs/{run_id}/stop) or wait until one ends"
        )


def exit_reason(returncode: int) -> str:
    """Why a run whose process exited with ``returncode`` left no result of its own."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory, or killed by hand)" if -returncode == signal.SIGKILL else ""
        return f"the run's process was killed by {name}{hint}; see {LOG_FILE}"
    return f"the run's process exited with code {returncode} without a result; see {LOG_FILE}"


def _is_run_process(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` is a live process started for ``run_dir`` (a zombie has no cmdline)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(run_dir / REQUEST_FILE).encode() in cmdline


def _run_process_alive(pid: int | None, run_dir: Path) -> bool:
    """Whether a process of this run is alive; a reused pid or a zombie does not count.

    Without a pid (the run's process had not written its status yet), any live process of
    the run counts: one that another service started on the same folder moments ago.
    """
    processes = Path("/proc")
    if not processes.is_dir():  # no /proc: all one can ask is whether the pid exists
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if pid is not None:
        return _is_run_process(pid, run_dir)
    return any(
        _is_run_process(int(entry.name), run_dir)
        for entry in processes.iterdir()
        if entry.name.isdigit()
    )


class RunManager:
    """Starts, lists and stops runs under ``root`` (the trainer's checkpoint directory)."""

    def __init__(self, root: Path, model_dir: Path, *, max_concurrent_runs: int = 2) -> None:
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        self.root = root
        self.model_dir = model_dir
        self.max_concurrent_runs = max_concurrent_runs
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._stop_requested: set[str] = set()
        self._status_lock = threading.Lock()
        for run_id in self._run_ids():
            self.status(run_id)  # settles runs left unfinished by an earlier service

    def new_run_dir(self, kind: Literal["sft", "grpo"]) -> tuple[str, Path]:
        """A fresh run id and its (not yet created) directory."""
        run_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        return run_id, (self.root / run_id).resolve()

    def active(self) -> builtins.list[str]:
        """Ids of the runs whose process is still running, oldest first."""
        return [run_id for run_id, p in self._processes.items() if p.returncode is None]

    def start(self, run_id: str, kind: Literal["sft", "grpo"], config: BaseModel) -> RunStatus:
        """Write ``config`` into the run directory and start the run's process.

        Raises ``RunLimitError`` when ``max_concurrent_runs`` runs are running already.
        """
        active = self.active()
        if len(active) >= self.max_concurrent_runs:
            raise RunLimitError(active, self.max_concurrent_runs)
        run_dir = self.root.resolve() / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        write_json_atomic(run_dir / REQUEST_FILE, config.model_dump(mode="json"))
        # Written before the child starts, so it never overwrites the child's own status.
        write_status(run_dir, RunStatus(run_id=run_id, kind=kind, state="pending"))
        # Its own process group, and it dies with the service (no orphaned trainers).
        process = spawn(
            [
                sys.executable, "-m", "astra_trainer.cli", kind,
                "--config", str(run_dir / REQUEST_FILE), "--model-dir", str(self.model_dir),
            ],
            env=dict(os.environ),
            log_path=run_dir / LOG_FILE,
        )  # fmt: skip
        self._processes[run_id] = process
        watcher = threading.Thread(
            target=self._watch, args=(run_id, process), name=f"watch {run_id}", daemon=True
        )
        self._watchers[run_id] = watcher
        watcher.start()
        return RunStatus(run_id=run_id, kind=kind, state="pending", pid=process.pid)

    def status(self, run_id: str) -> RunStatus:
        """The run's state; a run whose process is gone without saying so reads ``failed``."""
        if not _RUN_ID.match(run_id) or not (self.root / run_id).is_dir():
            raise RunNotFoundError(run_id)
        run_dir = self.root.resolve() / run_id
        kind: Literal["sft", "grpo"] = "sft" if run_id.startswith("sft-") else "grpo"
        try:
            status = read_status(run_dir)
        except ValueError as exc:  # damaged by hand or a full disk: say so, do not 500
            reason = (
                "; ".join(e["msg"] for e in exc.errors()[:3])
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            return RunStatus(
                run_id=run_id, kind=kind, state="failed", error=f"unreadable status.json: {reason}"
            )
        if status is None:
            status = RunStatus(run_id=run_id, kind=kind, state="pending")
        if status.state not in _UNFINISHED:
            return status
        process = self._processes.get(run_id)
        if process is not None:
            if process.returncode is not None:  # exited; its watcher is settling the status
                self._settle(run_id, process.returncode, status)
            return status
        if not _run_process_alive(status.pid, run_dir):
            status.state = "failed"
            status.error = (
                f"the run's process{f' (pid {status.pid})' if status.pid else ''} is gone: it "
                f"ended without a result while no trainer service watched it; see {LOG_FILE}"
            )
            with self._status_lock:
                write_status(run_dir, status)
            logger.error("run %s: %s", run_id, status.error)
        return status

    def list(self) -> list[RunStatus]:
        """Every run under the root, oldest first."""
        return [self.status(run_id) for run_id in self._run_ids()]

    def stop(self, run_id: str) -> RunStatus:
        """Ask the run's process to stop (SIGTERM); returns its status."""
        status = self.status(run_id)
        process = self._processes.get(run_id)
        if process is not None and process.returncode is None:
            self._stop_requested.add(run_id)
            self._signal_stop(process, status)
        return status

    def _signal_stop(self, process: subprocess.Popen[bytes], status: RunStatus) -> None:
        """SIGTERM to the run: to rank 0 of a data-parallel run, which finishes its step, tells
        the other ranks to stop and exits; the launcher then exits 0. (Signalled itself, the
        launcher would kill every rank 30 s later, maybe inside a step.)"""
        run_dir = self.root.resolve() / status.run_id
        rank0 = status.pid
        if rank0 is not None and rank0 != process.pid and _is_run_process(rank0, run_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rank0, signal.SIGTERM)
                return
        process.send_signal(signal.SIGTERM)

    def wait(self, run_id: str, timeout: float) -> int | None:
        """Wait until the run's process has ended and its status is final; its exit code
        (None if it is not ours)."""
        process = self._processes.get(run_id)
        if process is None:
            return None
        code = process.wait(timeout=timeout)
        self._watchers[run_id].join(timeout=timeout)
        return code

    def close(self) -> None:
        """Stop every run still running (service shutdown)."""
        for run_id, process in self._processes.items():
            if process.returncode is None:
                self._stop_requested.add(run_id)
                try:
                    status = self.status(run_id)
                except RunNotFoundError:
                    process.send_signal(signal.SIGTERM)
                    continue
                self._signal_stop(process, status)
        for process in self._processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for watcher in self._watchers.values():
            watcher.join(timeout=30)

    def _run_ids(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        return [
            d.name
            for d in sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
            if _RUN_ID.match(d.name) and d.is_dir()
        ]

    def _watch(self, run_id: str, process: subprocess.Popen[bytes]) -> None:
        """Reap the run's process as soon as it exits and give the run its final state."""
        returncode = process.wait()
        run_dir = self.root.resolve() / run_id
        if not run_dir.is_dir():
            logger.warning(
                "run %s exited (code %d) after its folder was removed", run_id, returncode
            )
            return
        try:
            status = read_status(run_dir) or RunStatus(
                run_id=run_id, kind="sft" if run_id.startswith("sft-") else "grpo", state="pending"
            )
            self._settle(run_id, returncode, status)
        except (OSError, ValueError) as exc:  # e.g. a status file someone else damaged
            logger.error(
                "run %s exited (code %d); its status could not be settled: %s",
                run_id,
                returncode,
                exc,
            )
            return
        if status.state == "failed":
            logger.error(
                "run %s failed: %s\n--- last lines of %s ---\n%s",
                run_id,
                status.error,
                run_dir / LOG_FILE,
                tail(run_dir / LOG_FILE, 40),
            )
        else:
            logger.info("run %s ended %s (exit code %d)", run_id, status.state, returncode)

    def _settle(self, run_id: str, returncode: int, status: RunStatus) -> None:
        """Write a final state for a run whose process exited while its status was unfinished."""
        if status.state not in _UNFINISHED:
            return
        if run_id in self._stop_requested and returncode == -signal.SIGTERM:
            status.state = "stopped"
            status.error = "stopped on request before it finished"
        else:
            status.state = "failed"
            status.error = exit_reason(returncode)
        with self._status_lock:
            current = read_status(self.root.resolve() / run_id)
            if current is None or current.state in _UNFINISHED:
                write_status(self.root.resolve() / run_id, status)
