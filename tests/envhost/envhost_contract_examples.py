"""One valid example of each published contract of ``astra_proto.api.envhost``, keyed by its
name in ``CONTRACTS`` (tests/proto/test_contracts.py validates them against the published
schemas)."""

from __future__ import annotations

from envhost_support import weather_spec
from pydantic import BaseModel

from astra_proto.api.envhost import BfclPage, EpisodeSummary, TurnResult

EXAMPLES: dict[str, BaseModel] = {
    "EpisodeSummary": EpisodeSummary(
        id="ep-1",
        env_id="env_" + "a" * 32,
        state="open",
        turn=0,
        calls=2,
        mcp_url="http://127.0.0.1:8101/episodes/ep-1/mcp",
        last_active_at="2026-01-15T09:30:00+00:00",
    ),
    "TurnResult": TurnResult(turn=1),
    "BfclPage": BfclPage(total=3, offset=1, items=[weather_spec()]),
}
