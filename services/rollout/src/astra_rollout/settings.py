"""rollout configuration (env prefix ``ASTRA_ROLLOUT_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from astra_common.settings import ServiceSettings


class RolloutSettings(ServiceSettings):
    """How the rollout service runs."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_ROLLOUT_")

    port: int = 8102
    """TCP port the HTTP server listens on."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the trajectory stream and the policy pointer."""

    envhost_url: str = "http://127.0.0.1:8101"
    """Base URL of an envhost replica (episodes carry the URL of the replica holding them)."""

    policy_base_url: str = ""
    """OpenAI-compatible endpoint of the policy (e.g. http://vllm:8000/v1); empty means the
    embedded vLLM server that `astra up` starts."""

    policy_model: str = "SmolLM2-135M-Instruct"
    """Model name sent to the policy endpoint."""
