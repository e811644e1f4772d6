"""Shared fixtures: a private Redis server and a PostgreSQL database for the whole run."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from astra.redis_server import RedisServer, free_port
from astra_common.db.migrate import upgrade_async
from astra_envhost.settings import EnvhostSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get(
    "ASTRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


MODEL_CACHE = REPO_ROOT / ".pytest_cache" / "d" / "astra-trainer-models"
"""Where tests keep the converted default model (converted once, ~30 s, then verified)."""


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """SmolLM2-135M-Instruct converted by the trainer's model store, shared by every test."""
    from astra_trainer.models import ModelStore  # imported late: torch is slow to import

    return ModelStore(MODEL_CACHE).ensure_default()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of our own on a free loopback port, stopped at the end of the run."""
    server = RedisServer(directory=tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def _try_start_local_postgres() -> None:
    """Start the machine's own cluster when it is installed but stopped (Debian layout)."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a reachable PostgreSQL server; skips (with the reason) only when none can be had."""
    if _postgres_reachable() is not None:
        _try_start_local_postgres()
    reason = _postgres_reachable()
    if reason is not None:
        pytest.skip(
            f"no PostgreSQL server at {POSTGRES_ADMIN_URL} and none could be started: {reason}"
        )
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for this test run (dropped afterwards), as a plain libpq URL."""
    name = f"astra_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    await upgrade_async(url)
    return url


@pytest.fixture
def envhost_settings(database_url: str) -> Callable[..., EnvhostSettings]:
    def make(**overrides: Any) -> EnvhostSettings:
        port = overrides.pop("port", None) or free_port()
        values: dict[str, Any] = {
            "database_url": database_url,
            "port": port,
            "tool_timeout_s": 2.0,
            "tool_cpu_s": 5,
        }
        return EnvhostSettings(**(values | overrides))

    return make
