"""The rollout batch API's request and status models.

These cross the REST boundary of the rollout service only; they forbid unknown fields like
every contract (candidates for ``astra_proto`` once another service or the CLI needs them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_common.query_bounds import DB_INT_MAX
from astra_proto import JobState
from astra_proto.environment import EnvironmentId
from astra_rollout.agent import EpisodeLimits
from astra_rollout.policy import SamplingParams
from astra_rollout.registry_client import RegistryQuery

MAX_ENV_IDS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyEndpoint(_Strict):
    """Which policy plays; unset fields take the service's settings."""

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (.../v1); default: settings."
    )
    model: str | None = Field(default=None, description="Model name; default: settings.")


class DistractorOptions(_Strict):
    """Irrelevant-tool mixing: up to ``per_band`` distractors from each similarity band."""

    enabled: bool = False
    per_band: int = Field(default=2, ge=0, le=16)
    seed: int = Field(default=0, description="Seed of the draw within each band.")


class BatchRequest(_Strict):
    """Group rollouts: ``group_size`` episodes of each environment, given by id or by query."""

    env_ids: list[EnvironmentId] | None = Field(default=None, min_length=1, max_length=MAX_ENV_IDS)
    query: RegistryQuery | None = Field(
        default=None, description="Registry filters (the synth API's GET /v1/environments)."
    )
    group_size: int = Field(default=8, ge=1, le=1024, description="G: rollouts per environment.")
    policy: PolicyEndpoint = Field(default_factory=PolicyEndpoint)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    limits: EpisodeLimits | None = Field(default=None, description="Default: settings.")
    distractors: DistractorOptions = Field(default_factory=DistractorOptions)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    # seed + i is stored with each episode: it stays a database integer for any group size.
    seed: int = Field(
        default=0, ge=0, le=DB_INT_MAX - 1024, description="Episode i of a group gets seed + i."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.env_ids is None) == (self.query is None):
            raise ValueError("give exactly one of env_ids and query")
        if self.env_ids is not None and len(set(self.env_ids)) != len(self.env_ids):
            raise ValueError("env_ids must not repeat an id (use group_size for repeats)")
        return self


class BatchSummary(_Strict):
    """Aggregates over the batch's finished (not failed) episodes.

    ``success_rate`` counts episodes whose reward F1 is 1 (every sub-question solved with no
    wasted call, or a BFCL pass); ``groups_with_variance`` counts groups (all episodes done)
    whose rewards are not all equal: the ones GRPO can learn from.
    """

    scored: int = 0
    mean_reward: float | None = None
    success_rate: float | None = None
    mean_turns: float | None = None
    mean_tool_calls: float | None = None
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    groups_done: int = 0
    groups_with_variance: int = 0


class EpisodeFailure(_Strict):
    """One failed episode of a batch."""

    trajectory_id: str
    env_id: str
    reason: str


class BatchStatus(_Strict):
    """Progress and outcome of a batch (``published`` counts trajectories on the stream)."""

    id: str
    state: JobState
    environments: int
    group_size: int
    total: int = Field(description="Episodes in the batch.")
    done: int = Field(default=0, description="Episodes finished, failed ones included.")
    failed: int = 0
    cancelled: int = 0
    published: int = 0
    publish_errors: int = 0
    summary: BatchSummary = Field(default_factory=BatchSummary)
    recent_failures: list[EpisodeFailure] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
