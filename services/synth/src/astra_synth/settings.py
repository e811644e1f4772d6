"""synth configuration (env prefix ``ASTRA_SYNTH_``); the API and the workers share it."""

from __future__ import annotations

from typing import Literal

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

    rollout_url: str = "http://127.0.0.1:8102"
    """Base URL of the rollout service (trajectory synthesis plays episodes through it)."""

    llm_base_url: str = ""
    """OpenAI-compatible endpoint for synthesis; empty selects the built-in procedural source."""

    llm_model: str = ""
    """Model name sent to the synthesis LLM endpoint."""

    worker_concurrency: int = 2
    """Celery worker processes (or threads) per worker."""

    worker_pool: Literal["prefork", "threads", "solo"] = "prefork"
    """Celery worker pool implementation."""
