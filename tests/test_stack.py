"""``astra up`` / ``astra status`` as a user runs them: real processes, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from astra.stack import STACK_ID_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

ASTRA = [sys.executable, "-m", "astra.cli"]
Stack = tuple[subprocess.Popen[str], Path, dict[str, Any]]


def processes_of_stack(stack_id: str) -> list[int]:
    """Pids of every live process started for the stack (children inherit its id)."""
    marker = f"{STACK_ID_ENV}={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(params=[["--no-policy-server"]])
def running_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    state_dir = tmp_path / "astra"
    runner = subprocess.Popen(
        [*ASTRA, "up", "--state-dir", str(state_dir), "--port-base", "0", *request.param],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    state_file = state_dir / "stack.json"
    try:
        wait_until(lambda: state_file.is_file() or runner.poll() is not None, 60, "stack.json")
        assert runner.poll() is None, runner.communicate()[0]
        state = json.loads(state_file.read_text())
        yield runner, state_dir, state
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
        if runner.stdout is not None:
            runner.stdout.close()


def all_healthy(state: dict[str, Any]) -> bool:
    try:
        for info in state["services"].values():
            url = info["url"] and f"{info['url']}{info.get('health', '/healthz')}"
            if url and httpx.get(url, timeout=2).status_code != 200:
                return False
        workers = httpx.get(f"{state['services']['synth']['url']}/v1/workers", timeout=3)
        return bool(workers.json()["count"])
    except httpx.HTTPError:
        return False


def test_up_serves_every_service_and_sigterm_leaves_no_process(running_stack: Stack) -> None:
    runner, state_dir, state = running_stack
    assert set(state["services"]) == {"synth", "envhost", "rollout", "trainer", "synth-worker"}
    wait_until(lambda: all_healthy(state), 90, "every /healthz and a worker")
    assert len(processes_of_stack(state["stack_id"])) >= 6  # 5 children + redis (+ pool)

    status = subprocess.run(
        [*ASTRA, "status", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("synth", "envhost", "rollout", "trainer", "synth-worker"):
        assert name in status.stdout

    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, output
    assert "stack stopped" in output
    assert processes_of_stack(state["stack_id"]) == []
    assert not (state_dir / "stack.json").exists()


def test_killed_runner_leaves_no_orphans(running_stack: Stack) -> None:
    runner, _, state = running_stack
    wait_until(lambda: all_healthy(state), 90, "every /healthz and a worker")
    runner.kill()  # SIGKILL: no chance to clean up; the children must still go
    runner.wait(10)
    wait_until(lambda: not processes_of_stack(state["stack_id"]), 30, "children to exit")


def test_status_without_stack_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ASTRA, "status", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no stack running" in result.stderr


VLLM_VENV = Path(sys.prefix).parent / ".venv-vllm"


@pytest.mark.timeout(420)
@pytest.mark.skipif(
    not (VLLM_VENV / "bin" / "python").exists(),
    reason=f"no vLLM environment at {VLLM_VENV}: run scripts/vllm-venv.sh (make install does)",
)
def test_embedded_policy_server_is_served_and_dies_with_the_runner(
    tmp_path: Path, default_model_dir: Path
) -> None:
    state_dir = tmp_path / "astra"
    runner = subprocess.Popen(
        [*ASTRA, "up", "--state-dir", str(state_dir), "--port-base", "0",
         "--policy-model", str(default_model_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        state_file = state_dir / "stack.json"
        wait_until(lambda: state_file.is_file() or runner.poll() is not None, 120, "stack.json")
        assert runner.poll() is None, runner.communicate()[0]
        state = json.loads(state_file.read_text())
        assert "policy" in state["services"]
        wait_until(lambda: all_healthy(state), 300, "every service and the policy server")
        models = httpx.get(f"{state['services']['policy']['url']}/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct"]
        rollout = state["services"]["rollout"]["url"]
        assert httpx.get(f"{rollout}/healthz", timeout=5).status_code == 200

        runner.kill()  # SIGKILL: vLLM and its engine processes must go too
        runner.wait(10)
        wait_until(lambda: not processes_of_stack(state["stack_id"]), 60, "children to exit")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
        if runner.stdout is not None:
            runner.stdout.close()
