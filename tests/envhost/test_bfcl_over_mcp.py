"""BFCL multi-turn through envhost: every ground truth replayed over MCP passes the checker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from envhost_support import envhost, register
from mcp import Client

from astra_envhost.bfcl import bfcl_config, load_bfcl_environments, parse_ground_truth_call
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, RewardBreakdown

# Upstream data issues no agent can get past through envhost (see tests/envhost/test_bfcl.py):
KNOWN_EXCEPTIONS = {
    # The ground truth calls tail() on turn 1, but the entry only offers tail from turn 3.
    "multi_turn_miss_func_49": "unknown tool 'tail'",
    # close_ticket's document types ticket_id as an integer; the ground truth passes the
    # string "ticket_001", which envhost's argument validation refuses.
    **{
        f"multi_turn_{category}_173": "invalid arguments for close_ticket"
        for category in ("base", "miss_func", "miss_param", "long_context")
    },
}


async def replay(base: str, http: httpx.AsyncClient, spec: EnvironmentSpec) -> dict[str, Any]:
    """Play an entry's ground truth turn by turn over MCP; return the score and the errors."""
    config = bfcl_config(spec)
    created = await http.post("/v1/episodes", json={"env_id": spec.id})
    assert created.status_code == 201, created.text
    episode_id, mcp_url = created.json()["id"], created.json()["mcp_url"]
    errors: list[str] = []
    async with Client(mcp_url) as client:
        for turn, calls in enumerate(config["ground_truth"]):
            if turn:
                advanced = await http.post(f"/v1/episodes/{episode_id}/turns")
                assert advanced.status_code == 200, advanced.text
            for call in calls:
                name, arguments = parse_ground_truth_call(call, config["involved_classes"])
                result = await client.call_tool(name, arguments)
                if result.is_error:
                    errors.append(result.content[0].text)  # type: ignore[union-attr]
    score = await http.post(f"/v1/episodes/{episode_id}/score", json={})
    assert score.status_code == 200, score.text
    await http.delete(f"/v1/episodes/{episode_id}")
    return {"reward": RewardBreakdown.model_validate(score.json()), "errors": errors}


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_ground_truth_passes_over_mcp(
    database_url: str, envhost_settings: Callable[..., EnvhostSettings]
) -> None:
    specs = load_bfcl_environments()
    assert len(specs) == 800
    await register(database_url, *specs)
    outcomes: dict[str, dict[str, Any]] = {}
    limits = httpx.Limits(max_connections=16)
    async with (
        envhost(envhost_settings(max_episodes=100)) as base,
        httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http,
    ):
        slots = asyncio.Semaphore(8)

        async def one(spec: EnvironmentSpec) -> None:
            async with slots:
                outcomes[str(bfcl_config(spec)["entry_id"])] = await replay(base, http, spec)

        await asyncio.gather(*(one(spec) for spec in specs))

    failed = {entry: o for entry, o in outcomes.items() if o["reward"].f1 != 1.0}
    assert sorted(failed) == sorted(KNOWN_EXCEPTIONS), {
        entry: (o["reward"].details, o["errors"][:2])
        for entry, o in failed.items()
        if entry not in KNOWN_EXCEPTIONS
    }
    for entry, reason in KNOWN_EXCEPTIONS.items():
        assert any(reason in error for error in failed[entry]["errors"]), failed[entry]
    passed = [o for entry, o in outcomes.items() if entry not in failed]
    assert all(o["reward"].verifier == "bfcl_multi_turn" for o in passed)
    assert all(not o["errors"] for o in passed), "a passing replay hit a tool error"
