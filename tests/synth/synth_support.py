"""synth test support: a real synth API and real Celery worker processes on a private Redis."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis
from envhost_support import envhost
from http_support import running

from astra.redis_server import free_port
from astra_common.streams import PublishResult, StreamPublisher
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    TRAJECTORY_STREAM,
    FinishReason,
    Message,
    RewardBreakdown,
    StreamEnvelope,
    Timings,
    ToolSpec,
    Trajectory,
)
from astra_synth.app import create_app
from astra_synth.settings import SynthSettings

_redis_databases = itertools.count(1)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def finished_trajectory(
    number: int, *, prefix: str = "traj", group_id: str = "group-1"
) -> Trajectory:
    """A small finished trajectory as rollout publishes it (id ``{prefix}-{number}``)."""
    return Trajectory(
        id=f"{prefix}-{number}",
        env_id="env_capitals",
        episode_id=f"ep-{number}",
        group_id=group_id,
        policy_version=number % 2,
        messages=[
            Message(role="user", content="What is the capital of France?"),
            Message(role="assistant", content="Paris"),
        ],
        tools=[ToolSpec(name="lookup_0", description="Look up one fact.")],
        reward=RewardBreakdown.compute(1, ["q0"], 1),
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=T0, finished_at=T0 + timedelta(seconds=2)),
    )


def rollout_envelope(trajectory: Trajectory) -> StreamEnvelope[Trajectory]:
    """The envelope rollout writes: the record id is the trajectory id."""
    return StreamEnvelope[Trajectory](
        record_id=trajectory.id, producer="rollout@test", payload=trajectory
    )


async def publish_as_rollout(
    redis_client: aioredis.Redis, trajectories: Iterable[Trajectory]
) -> list[PublishResult]:
    """Publish ``trajectories`` on the trajectory stream through the real publisher."""
    async with StreamPublisher(redis_client, TRAJECTORY_STREAM) as publisher:
        return await publisher.publish_many(rollout_envelope(t) for t in trajectories)


def private_redis(redis_url: str) -> str:
    """The test Redis with a database number of its own, emptied, so queues and streams
    never mix across tests (the numbers are reused after fifteen)."""
    scheme, rest = redis_url.split("://", 1)
    url = f"{scheme}://{rest.split('/', 1)[0]}/{next(_redis_databases) % 15 + 1}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@dataclass
class Workers:
    """Celery worker processes of one test; every one is killed at the end."""

    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"worker-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "astra_synth.worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))


@asynccontextmanager
async def synth_service(
    *, database_url: str, redis_url: str, envhost_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[str, Workers]]:
    """A real synth API on a free port and a way to start its Celery workers (none started)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "envhost_url": envhost_url,
        "port": free_port(),
        "data_dir": str(tmp_path / "synth-data"),
        "worker_pool": "solo",
        "worker_concurrency": 1,
    } | overrides
    settings = SynthSettings(**values)
    env = {**os.environ} | {
        f"ASTRA_SYNTH_{key.upper()}": str(value)
        for key, value in values.items()
        if key != "port" and value is not None
    }
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir(exist_ok=True)
    workers = Workers(env=env, log_dir=log_dir)
    try:
        async with running(create_app(settings), settings.port) as url:
            yield url, workers
    finally:
        await asyncio.to_thread(workers.kill_all)


async def wait_for_job(
    http: httpx.AsyncClient, job_id: str, *, timeout_s: float = 120, until: Any = None
) -> dict[str, Any]:
    """Poll the job until it ends (or ``until(job)`` holds); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            response = await http.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job: dict[str, Any] = response.json()
            if (until is not None and until(job)) or job["state"] in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                return job
            await asyncio.sleep(0.2)


def stage(job: dict[str, Any], name: str) -> dict[str, Any]:
    """One stage's progress of a job (zero counts before the job has started)."""
    found = [s for s in job["progress"] if s["stage"] == name]
    return found[0] if found else {"stage": name, "done": 0, "total": None, "rejected": {}}


@dataclass
class SynthStack:
    """A real envhost (unless one was given), synth API and a client of that API."""

    http: httpx.AsyncClient
    workers: Workers
    envhost_url: str
    url: str


@asynccontextmanager
async def synth_stack(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    envhost_settings: Callable[..., EnvhostSettings] | None = None,
    *,
    envhost_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[SynthStack]:
    """envhost (from ``envhost_settings``, or the given URL), the synth API on a private Redis
    database, and an HTTP client of it; workers are started by the test."""
    async with AsyncExitStack() as stack:
        if envhost_url is None:
            assert envhost_settings is not None
            envhost_url = await stack.enter_async_context(envhost(envhost_settings()))
        url, workers = await stack.enter_async_context(
            synth_service(
                database_url=database_url,
                redis_url=private_redis(redis_url),
                envhost_url=envhost_url,
                tmp_path=tmp_path,
                **overrides,
            )
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        yield SynthStack(http=http, workers=workers, envhost_url=envhost_url, url=url)


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """The base URL of an HTTP server that accepts connections and never answers (a hung
    tool server or policy endpoint)."""
    held: list[asyncio.StreamWriter] = []
    closing = False

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Every connection's writer is closed here, also one accepted just before the server
        # closed whose handler starts after (an unclosed writer warns when collected, in
        # whichever later test the collection happens).
        try:
            if not closing:
                held.append(writer)
                await reader.read()  # until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        closing = True
        server.close()
        for writer in held:
            writer.close()
