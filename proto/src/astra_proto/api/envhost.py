"""The envhost service's REST contracts: request and answer bodies of its routes.

The episode bodies themselves are shared models of ``astra_proto`` (``Episode``,
``EpisodeRequest``, ``ScoreRequest``, ``RewardBreakdown``; ``ExecutionRequest`` and
``ExecutionResult`` for ``POST /v1/executions``); this module holds the answers that only
envhost's routes give.
"""

from __future__ import annotations

from pydantic import BaseModel

from astra_proto.base import ContractModel
from astra_proto.environment import EnvironmentSpec

MAX_BFCL_ENTRY_IDS = 1_000
"""Entry ids one request of ``GET /v1/bfcl/environments`` may name."""

MAX_BFCL_PAGE = 20
"""BFCL specs per answer of ``GET /v1/bfcl/environments``: a spec with its long-context files
runs to tens of kilobytes, and the whole benchmark to ~16 MB, more than one answer should
carry."""


class EpisodeSummary(ContractModel):
    """One open episode in a listing (``GET /v1/episodes``)."""

    id: str
    env_id: str
    state: str
    turn: int
    calls: int
    mcp_url: str
    last_active_at: str


class TurnResult(ContractModel):
    """The turn an episode moved to (``POST /v1/episodes/{id}/turns``)."""

    turn: int


class BfclPage(ContractModel):
    """One page of a BFCL selection's specs, in BFCL's order (``GET /v1/bfcl/environments``)."""

    total: int
    offset: int
    items: list[EnvironmentSpec]


CONTRACTS: dict[str, type[BaseModel]] = {
    "EpisodeSummary": EpisodeSummary,
    "TurnResult": TurnResult,
    "BfclPage": BfclPage,
}
"""Every contract of this module whose JSON Schema is published, by model name."""
