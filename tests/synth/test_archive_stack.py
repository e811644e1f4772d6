"""A real local stack (``astra up``) archives the trajectories published on its stream, and the
console's trajectories API lists them: nothing but the stack's own processes runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from synth_support import finished_trajectory, publish_as_rollout

from astra_proto import Trajectory

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

START_S = 120.0


def launch(state_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``astra up`` with free ports and no policy server, its output to ``log_path``."""
    command = [sys.executable, "-m", "astra.cli", "up", "--state-dir", str(state_dir)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*command, "--port-base", "0", "--no-policy-server"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """``astra up`` (no policy server) until synth answers; its state; stopped with SIGTERM."""
    state_dir = tmp_path / "astra"
    runner = launch(state_dir, tmp_path / "astra-up.log")
    state_file = state_dir / "stack.json"
    try:
        async with asyncio.timeout(START_S), httpx.AsyncClient(timeout=5) as http:
            while not state_file.is_file():
                assert runner.poll() is None, f"astra up exited with {runner.returncode}"
                await asyncio.sleep(0.2)
            state: dict[str, Any] = json.loads(state_file.read_text())
            synth = state["services"]["synth"]["url"]
            while True:
                assert runner.poll() is None, f"astra up exited with {runner.returncode}"
                try:
                    if (await http.get(f"{synth}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        yield state
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(runner.wait, 60)
            except subprocess.TimeoutExpired:
                runner.kill()
                await asyncio.to_thread(runner.wait, 30)


async def test_a_local_stack_lists_published_trajectories_in_its_console(
    stack: dict[str, Any],
) -> None:
    published = [
        finished_trajectory(number, prefix="traj-stack", group_id="group-stack")
        for number in range(3)
    ]
    redis = aioredis.Redis.from_url(stack["redis_url"])
    try:  # what rollout does with each finished trajectory
        await publish_as_rollout(redis, published)
    finally:
        await redis.aclose()

    synth = stack["services"]["synth"]["url"]
    async with httpx.AsyncClient(base_url=synth, timeout=30) as http:
        async with asyncio.timeout(START_S):
            while True:
                page = (await http.get("/v1/trajectories")).json()
                if page["total"] >= len(published):
                    break
                await asyncio.sleep(0.5)
        assert {t["id"] for t in page["items"]} == {t.id for t in published}
        one = await http.get("/v1/trajectories/traj-stack-1")
        assert one.status_code == 200, one.text
        assert Trajectory.model_validate(one.json()) == published[1]
