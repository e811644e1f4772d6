"""Procedural environment synthesis: environments per second per worker, end to end.

    .venv/bin/python bench/synth.py [--count 200] [--concurrency 1 4]

Measured in one run on this machine:

- the generator alone (no verification): specs built per second in process (the baseline);
- a whole job as one Celery worker runs it (``run_environment_job``, in this process, one
  worker): generation, every reference call replayed in envhost's bubblewrap sandbox through
  ``POST /v1/executions`` (a real envhost process on loopback), certificate, registration in a
  SQLite registry. Reported per ``--concurrency`` (environments verified at once).

The ratio job/generator shows what verification in the real sandbox costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from astra.redis_server import free_port
from astra_common.db import Database
from astra_common.db.migrate import upgrade_async
from astra_proto import JobKind, SynthesisJob
from astra_synth.jobs.environment_job import run_environment_job
from astra_synth.procedural import generate_environments
from astra_synth.settings import SynthSettings


def generator_rate(count: int) -> float:
    """Specs per second of the generator alone."""
    started = time.perf_counter()
    generate_environments(count, 7)
    return count / (time.perf_counter() - started)


def start_envhost(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "ASTRA_ENVHOST_DATABASE_URL": database_url,
        "ASTRA_ENVHOST_PORT": str(port),
        "ASTRA_ENVHOST_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "astra_envhost.main"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"envhost exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("envhost did not become healthy")


async def job_rate(database_url: str, envhost_url: str, count: int, concurrency: int) -> float:
    """Registered environments per second of one job run as a worker runs it."""
    now = datetime.now(UTC)
    job = SynthesisJob(
        id=f"job_{uuid.uuid4().hex}",
        kind=JobKind.ENVIRONMENTS,
        params={"source": "procedural", "count": count, "seed": concurrency * 1000 + count,
                "concurrency": concurrency},
        created_at=now,
        updated_at=now,
    )  # fmt: skip
    async with Database(database_url) as database, database.transaction() as repos:
        await repos.jobs.create(job)
    settings = SynthSettings(database_url=database_url, envhost_url=envhost_url)
    started = time.perf_counter()
    state = await run_environment_job(job.id, settings)
    elapsed = time.perf_counter() - started
    async with Database(database_url) as database, database.transaction() as repos:
        done = await repos.jobs.get(job.id)
    if state.value != "succeeded" or done.result.get("registered") != count:
        raise SystemExit(f"job ended {state.value}: {done.error} {done.result}")
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    baseline = generator_rate(max(args.count, 500))
    print(f"generator alone: {baseline:,.0f} environments/s")
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'astra.db'}"
        await upgrade_async(database_url)
        port = free_port()
        envhost = start_envhost(database_url, port, Path(tmp) / "envhost.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, envhost)
            for concurrency in args.concurrency:
                rate = await job_rate(database_url, url, args.count, concurrency)
                print(
                    f"job, 1 worker, {concurrency} verified at once: {rate:,.1f} environments/s "
                    f"({args.count} registered; {rate / baseline:.3f} of the generator alone)"
                )
        finally:
            envhost.terminate()
            envhost.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
