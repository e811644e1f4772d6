"""What travels on Redis: every entry is a versioned envelope around one contract model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field, field_validator

from astra_proto.base import SCHEMA_VERSION, ContractModel

PayloadT = TypeVar("PayloadT", bound=BaseModel)

TRAJECTORY_STREAM = "astra:trajectories"
POLICY_KEY = "astra:policy"


def _now() -> datetime:
    return datetime.now(UTC)


class StreamEnvelope(ContractModel, Generic[PayloadT]):
    """One stream entry: schema version, idempotency key and typed payload (JSON, never pickle)."""

    schema_version: int = Field(default=SCHEMA_VERSION)
    record_id: str = Field(min_length=1, description="Idempotency key: one record, one entry.")
    produced_at: datetime = Field(default_factory=_now)
    producer: str | None = Field(default=None, description="Service and instance that wrote it.")
    payload: PayloadT

    @field_validator("schema_version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {value}; this reader speaks {SCHEMA_VERSION}"
            )
        return value


class PolicyPointer(ContractModel):
    """The current policy, as stored at ``astra:policy``."""

    version: int = Field(ge=0)
    checkpoint_uri: str = Field(description="Where the weights of this version are stored.")
    base_model: str
    served_model: str | None = Field(default=None, description="Model name at the policy server.")
    updated_at: datetime = Field(default_factory=_now)
