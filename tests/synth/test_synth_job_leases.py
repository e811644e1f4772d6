"""No job stays ``running``: a real Celery worker, a worker that is killed, and a real
PostgreSQL database that goes away in the middle of a job."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from synth_support import stage, synth_stack, wait_for_job

from astra_common.db.migrate import upgrade_async
from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_bwrap() is None,
        reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap",
    ),
]

Settings = Callable[..., EnvhostSettings]

FAST_LEASES: dict[str, Any] = {"job_lease_s": 6, "job_heartbeat_s": 1, "job_db_retry_s": 3}
"""Leases short enough for a test to see one run out."""


async def test_a_job_whose_worker_is_gone_for_good_fails_with_the_reason(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    async with synth_stack(
        database_url, redis_url, tmp_path, envhost_settings, job_max_attempts=1, **FAST_LEASES
    ) as s:
        worker = s.workers.start()
        job_id = (
            await s.http.post("/v1/jobs/environments", json={"count": 400, "concurrency": 1})
        ).json()["id"]
        await wait_for_job(s.http, job_id, until=lambda j: stage(j, "registered")["done"] >= 2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

        # No worker comes back: the lease runs out and the job ends, saying why.
        job = await wait_for_job(s.http, job_id, timeout_s=120)
        assert job["state"] == "failed", job
        assert "stopped renewing the job's lease" in job["error"]
        assert "1 of 1 runs used" in job["error"]
        assert job["attempts"] == 1
        assert job["finished_at"] is not None


@pytest.fixture
async def outage_database(postgres_admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """A migrated PostgreSQL database of this test alone: (its URL, its name)."""
    name = f"astra_outage_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_admin_url.rpartition('/')[0]}/{name}"
    try:
        await upgrade_async(url)
        yield url, name
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_reachable(admin_url: str, name: str, *, reachable: bool) -> None:
    """Open the database to connections again, or refuse new ones and end every open one
    (what clients see when the server goes away)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def worker_logs(tmp_path: Path) -> str:
    """Everything the test's workers logged so far (``Workers.logs`` keeps only the tails)."""
    return "\n".join(p.read_text() for p in sorted((tmp_path / "worker-logs").glob("*.log")))


async def poll_until_ended(http: httpx.AsyncClient, job_id: str, timeout_s: float) -> Any:
    """The job once it is terminal; answers that are not 200 (the API's database may still
    be coming back) are polled through."""
    async with asyncio.timeout(timeout_s):
        while True:
            response = await http.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200 and response.json()["state"] in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                return response.json()
            await asyncio.sleep(0.3)


async def test_a_job_ends_after_its_database_went_away_mid_job(
    outage_database: tuple[str, str],
    postgres_admin_url: str,
    redis_url: str,
    envhost_settings: Settings,
    tmp_path: Path,
) -> None:
    url, name = outage_database
    count = 40
    async with synth_stack(url, redis_url, tmp_path, envhost_settings, **FAST_LEASES) as s:
        s.workers.start()
        job_id = (
            await s.http.post(
                "/v1/jobs/environments", json={"count": count, "seed": 3, "concurrency": 1}
            )
        ).json()["id"]
        await wait_for_job(s.http, job_id, until=lambda j: stage(j, "registered")["done"] >= 2)

        set_reachable(postgres_admin_url, name, reachable=False)
        try:
            # The worker retries its writes, gives up, and cannot store how the job ended.
            async with asyncio.timeout(120):
                while True:
                    if "could not be stored" in worker_logs(tmp_path):
                        break
                    await asyncio.sleep(0.3)
        finally:
            set_reachable(postgres_admin_url, name, reachable=True)

        # The lease runs out; the job is queued again, runs again, and ends.
        job = await poll_until_ended(s.http, job_id, timeout_s=180)
        assert job["state"] == "succeeded", (job, s.workers.logs())
        assert job["attempts"] >= 2
        listed = (await s.http.get("/v1/environments", params={"job_id": job_id})).json()
        assert listed["total"] == count  # every environment once, none lost, none twice
        assert job["result"]["registered"] == count


async def test_a_job_delivered_while_its_database_is_away_runs_once_it_is_back(
    outage_database: tuple[str, str],
    postgres_admin_url: str,
    redis_url: str,
    envhost_settings: Settings,
    tmp_path: Path,
) -> None:
    url, name = outage_database
    settings = FAST_LEASES | {"job_db_retry_s": 120}
    async with synth_stack(url, redis_url, tmp_path, envhost_settings, **settings) as s:
        job_id = (await s.http.post("/v1/jobs/environments", json={"count": 3})).json()["id"]
        set_reachable(postgres_admin_url, name, reachable=False)
        try:
            s.workers.start()  # takes the queued job while the database is away
            async with asyncio.timeout(120):
                while True:
                    logs = worker_logs(tmp_path)
                    # The worker has tried to read the job and failed: it retries (or, without
                    # the retry, Celery reports the task raised, and the job never runs).
                    if f"read job {job_id} failed" in logs or "raised unexpected" in logs:
                        break
                    await asyncio.sleep(0.3)
        finally:
            set_reachable(postgres_admin_url, name, reachable=True)
        job = await poll_until_ended(s.http, job_id, timeout_s=90)
        assert job["state"] == "succeeded", (job, s.workers.logs())
        assert job["result"]["registered"] == 3
