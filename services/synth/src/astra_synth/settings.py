"""synth configuration (env prefix ``ASTRA_SYNTH_``); the API and the workers share it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from astra_common.settings import ServiceSettings


class SynthSettings(ServiceSettings):
    """How the control plane and its Celery workers run."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_SYNTH_")

    port: int = 8100
    """TCP port the HTTP server listens on."""

    database_url: str = "sqlite+aiosqlite:///.astra/astra.db"
    """Database holding jobs, the environment registry and datasets (SQLAlchemy async URL)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis used as the Celery broker and result backend."""

    envhost_url: str = "http://127.0.0.1:8101"
    """Base URL of the environment host (verification runs through it)."""

    envhost_token: SecretStr | None = None
    """Bearer token for envhost's write endpoints (executions), when envhost requires one."""

    rollout_url: str = "http://127.0.0.1:8102"
    """Base URL of the rollout service (trajectory synthesis plays episodes through it)."""

    rollout_token: SecretStr | None = None
    """Bearer token sent to the rollout API (teacher runs), when rollout requires one."""

    trainer_url: str = "http://127.0.0.1:8103"
    """Base URL of the trainer service (the web console reads training metrics through it)."""

    llm_base_url: str = ""
    """OpenAI-compatible endpoint for synthesis; empty selects the built-in procedural source."""

    llm_model: str = ""
    """Model name sent to the synthesis LLM endpoint."""

    llm_api_key: SecretStr | None = None
    """API key of the synthesis LLM endpoint, when it needs one."""

    llm_max_retries: int = 5
    """Retries of a failed LLM request (connection errors, 429, 5xx) with exponential backoff
    from 0.5 s up to 8 s; when they run out the job fails, saying why."""

    llm_timeout_s: float = 120.0
    """Timeout of one LLM request."""

    worker_concurrency: int = 2
    """Celery worker processes (or threads) per worker."""

    worker_pool: Literal["prefork", "threads", "solo"] = "prefork"
    """Celery worker pool implementation."""

    job_visibility_timeout_s: int = 3600
    """Seconds after which a job that a worker took but never acknowledged (the worker died)
    is delivered to another worker. Jobs are idempotent, so a job running longer than this is
    run twice at worst; lower it to recover faster from crashes."""

    job_lease_s: float = Field(default=120.0, gt=0)
    """A running job's lease: a job whose worker has not renewed it for this long (the worker
    died, hung, or lost the database) is queued again, or failed once ``job_max_attempts``
    runs were started. The API checks leases every quarter of this."""

    job_heartbeat_s: float = Field(default=20.0, gt=0)
    """How often a worker renews the lease of the job it runs (keep well below the lease)."""

    job_max_attempts: int = Field(default=3, ge=1)
    """How many runs of one job may be started before a job whose worker is lost is failed."""

    job_db_retry_s: float = Field(default=120.0, gt=0)
    """How long a worker retries a job's progress and final writes while the database is
    unreachable, before it gives up (the lease then settles the job)."""

    archive_enabled: bool = True
    """Run the trajectory archiver beside the API: a consumer of the ``archive`` group on
    ``astra:trajectories`` that stores every trajectory in the database (the console's
    Trajectories page reads it). Every API replica runs one; they share the group's work."""

    archive_retention_days: float = Field(default=30.0, gt=0)
    """Archived trajectories older than this (counted from when they were archived) are
    deleted, so the table does not grow without limit. The archiver prunes at start and then
    every ten minutes."""

    archive_reclaim_idle_s: float = Field(default=60.0, gt=0)
    """An entry delivered to an archiver that has not acknowledged it for this long (the
    archiver died between reading and storing) is taken over by another (``XAUTOCLAIM``)."""

    data_dir: str = ".astra/synth"
    """Where LLM response caches, toolsets and datasets are kept."""

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> SynthSettings:
        if self.job_heartbeat_s >= self.job_lease_s:
            raise ValueError(
                f"job_heartbeat_s ({self.job_heartbeat_s}) must be below job_lease_s "
                f"({self.job_lease_s}), or live jobs would be taken for lost"
            )
        return self
