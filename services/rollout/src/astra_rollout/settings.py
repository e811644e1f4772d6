"""rollout configuration (env prefix ``ASTRA_ROLLOUT_``)."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from astra_common.settings import ServiceSettings


class RolloutSettings(ServiceSettings):
    """How the rollout service runs."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_ROLLOUT_")

    port: int = 8102
    """TCP port the HTTP server listens on."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the trajectory stream, the policy pointer, the shared work queue and the
    records of runs (every replica must use the same one)."""

    envhost_url: str = "http://127.0.0.1:8101"
    """Base URL of an envhost replica (episodes carry the URL of the replica holding them)."""

    envhost_token: str | None = None
    """Bearer token sent to envhost (REST writes and MCP), when envhost requires one."""

    synth_url: str = "http://127.0.0.1:8100"
    """Base URL of the synth API, whose environment registry (`/v1/environments`) batches
    read specs and registry queries from."""

    policy_base_url: str = ""
    """OpenAI-compatible endpoint of the policy (e.g. http://vllm:8000/v1); empty means the
    embedded vLLM server that `astra up` starts."""

    policy_model: str = "SmolLM2-135M-Instruct"
    """Model name sent to the policy endpoint."""

    policy_api_key: str | None = None
    """Bearer key sent to the policy endpoint, when it requires one."""

    synth_token: str | None = None
    """Bearer token sent to the synth API's write endpoints (the tool emulator of teacher
    runs), when synth requires one."""

    teacher_api_key: str | None = None
    """Bearer key sent to teacher endpoints (teacher runs); default: `policy_api_key`."""

    policy_token_ids: bool = True
    """Ask the policy server for token ids and logprobs (vLLM's `return_token_ids`,
    `logprobs`); turn off for servers that reject unknown request fields."""

    policy_direct_http: bool = True
    """Post plain `http://` policy endpoints over the rollout's own keep-alive HTTP/1.1 pool
    (far less CPU per request at hundreds of episodes in flight); off: always through httpx,
    as for `https://` endpoints. The pool also stays unused, with a warning, on an httpx
    version it was not tested against."""

    policy_timeout_s: float = 300.0
    """Timeout of one chat-completion request."""

    policy_retries: int = 4
    """Retries of a chat-completion request after a connection error, 429 or 5xx."""

    policy_backoff_s: float = 0.5
    """First retry delay; doubled on every further retry (with jitter)."""

    max_concurrent_episodes: int = 256
    """Episodes in flight at once across all batches (the backpressure bound)."""

    max_batch_episodes: int = 100_000
    """Largest batch accepted (environments times group size)."""

    max_turns: int = 32
    """Default limit of assistant turns (policy calls) per episode."""

    token_budget: int = 16_384
    """Default limit of tokens per episode (prompt plus completion of the last call)."""

    episode_timeout_s: float = 600.0
    """Default wall-clock limit of one episode (scoring not included)."""

    stream_maxlen: int = 1_000_000
    """Approximate length the trajectory stream is trimmed to."""

    work_lease_s: float = 60.0
    """Lease of a unit of work (one episode) taken from the shared work queue: its replica
    renews the claim at least every third of it; a unit whose replica stopped renewing (it
    died or hung) is taken over by another replica once the lease has passed."""

    work_max_deliveries: int = 3
    """Times a unit may be handed out (to replicas that then stopped before finishing it);
    beyond that it is recorded as a failed episode with the reason, so every run ends."""

    run_retention_s: float = 7 * 24 * 3600.0
    """How long a run's record (status, counters, scores, kept trajectories) stays in Redis
    after its last change."""

    @model_validator(mode="after")
    def _positive(self) -> Self:
        for name in ("max_concurrent_episodes", "max_batch_episodes", "max_turns", "token_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.policy_retries < 0:
            raise ValueError("policy_retries must be >= 0")
        if self.work_max_deliveries < 1:
            raise ValueError("work_max_deliveries must be at least 1")
        for name in ("policy_timeout_s", "episode_timeout_s", "work_lease_s", "run_retention_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        return self
