"""Training runs as child processes of the trainer service, one run directory each.

A run is ``python -m astra_trainer.cli {sft,grpo} --config <run_dir>/request.json``; its
state is what it writes in its run directory (``status.json``, ``metrics.jsonl``), so the
service can restart without losing track of finished runs. Stopping sends SIGTERM: a GRPO run
finishes the step in progress (entries acked) and exits; an SFT run is interrupted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from astra_common.processes import spawn
from astra_trainer.run_files import RunStatus, read_status, write_json_atomic

REQUEST_FILE = "request.json"
_RUN_ID = re.compile(r"^[a-z]+-[0-9a-f]{12}$")


class RunNotFoundError(LookupError):
    """No run with that id."""


class RunManager:
    """Starts, lists and stops runs under ``root`` (the trainer's checkpoint directory)."""

    def __init__(self, root: Path, model_dir: Path) -> None:
        self.root = root
        self.model_dir = model_dir
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def new_run_dir(self, kind: Literal["sft", "grpo"]) -> tuple[str, Path]:
        """A fresh run id and its (not yet created) directory."""
        run_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        return run_id, (self.root / run_id).resolve()

    def start(self, run_id: str, kind: Literal["sft", "grpo"], config: BaseModel) -> RunStatus:
        """Write ``config`` into the run directory and start the run's process."""
        run_dir = self.root.resolve() / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        write_json_atomic(run_dir / REQUEST_FILE, config.model_dump(mode="json"))
        # Its own process group, and it dies with the service (no orphaned trainers).
        process = spawn(
            [
                sys.executable, "-m", "astra_trainer.cli", kind,
                "--config", str(run_dir / REQUEST_FILE), "--model-dir", str(self.model_dir),
            ],
            env=dict(os.environ),
            log_path=run_dir / "train.log",
        )  # fmt: skip
        self._processes[run_id] = process
        return RunStatus(run_id=run_id, kind=kind, state="pending", pid=process.pid)

    def status(self, run_id: str) -> RunStatus:
        """The run's state; a process that died without saying so reads ``failed``."""
        if not _RUN_ID.match(run_id) or not (self.root / run_id).is_dir():
            raise RunNotFoundError(run_id)
        status = read_status(self.root / run_id)
        process = self._processes.get(run_id)
        kind: Literal["sft", "grpo"] = "sft" if run_id.startswith("sft-") else "grpo"
        if status is None:
            status = RunStatus(run_id=run_id, kind=kind, state="pending")
        if (
            process is not None
            and process.poll() is not None
            and status.state
            in (
                "pending",
                "running",
            )
        ):
            status.state = "failed"
            status.error = f"process exited with code {process.returncode}; see train.log"
        return status

    def list(self) -> list[RunStatus]:
        """Every run under the root, oldest first."""
        if not self.root.is_dir():
            return []
        return [
            self.status(d.name)
            for d in sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
            if _RUN_ID.match(d.name)
        ]

    def stop(self, run_id: str) -> RunStatus:
        """Ask the run's process to stop (SIGTERM); returns its status."""
        status = self.status(run_id)
        process = self._processes.get(run_id)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return status

    def wait(self, run_id: str, timeout: float) -> int | None:
        """Wait for the run's process; its exit code (None if it is not ours)."""
        process = self._processes.get(run_id)
        return None if process is None else process.wait(timeout=timeout)

    def close(self) -> None:
        """Stop every run still running (service shutdown)."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
